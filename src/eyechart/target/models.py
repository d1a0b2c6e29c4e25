"""Model profiles of the reference target: what a served model costs, counts and how fast it runs.

A profile is the simulated GPU deployment of one model: its image token rule (CONTRACT.md section 8),
context length, price (for ``usage.estimated_cost``) and a latency model. The latency model is what the
client sees, not this machine's CPU:

    TTFT = queue wait + prefill_tokens / prefill_tokens_per_s + image_tokens * vision_encode_s_per_token
    ITL  = decode_step_s * (1 + batch_slowdown * (running_sequences - 1))

``max_seqs`` sequences run at once; more wait in a FIFO queue, so overload shows as queueing.
``kv_tokens`` is the KV-cache capacity in tokens (prompt + answer of every running sequence).
The numbers are illustrative, of the order of a single modern datacenter GPU; they are documented
here so a load test against the target has a known ground truth.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

TokenRule = Literal["qwen2-vl", "llama-3.2-vision", "llava-1.5"]
LatencyMode = Literal["profile", "zero"]


@dataclass(frozen=True)
class ModelProfile:
    key: str  # what --model-profile takes
    model_id: str  # the id served in /models and echoed in responses
    token_rule: TokenRule
    context_length: int
    price_in_per_m: float  # USD per million prompt tokens
    price_out_per_m: float  # USD per million completion tokens
    prefill_tokens_per_s: float
    vision_encode_s_per_token: float
    decode_step_s: float  # inter-token latency of a lone sequence
    batch_slowdown: float  # each extra running sequence slows a decode step by this fraction
    max_seqs: int
    kv_tokens: int
    max_images: int | None = None  # None: no count limit (the default profile states none)
    gpu: str = ""

    @property
    def zero_latency(self) -> bool:
        return self.decode_step_s == 0 and self.prefill_tokens_per_s == float("inf")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return round(
            (prompt_tokens * self.price_in_per_m + completion_tokens * self.price_out_per_m) / 1e6, 10
        )

    def prefill_s(self, text_tokens: int, image_tokens: int) -> float:
        """Simulated time from admission to the first token (without the queue wait)."""
        if self.prefill_tokens_per_s == float("inf"):
            return 0.0
        return (text_tokens + image_tokens) / self.prefill_tokens_per_s + (
            image_tokens * self.vision_encode_s_per_token
        )

    def step_s(self, running: int) -> float:
        """Simulated decode step (inter-token latency) with ``running`` sequences in the batch."""
        return self.decode_step_s * (1 + self.batch_slowdown * max(0, running - 1))

    def tuned(
        self,
        *,
        latency: LatencyMode = "profile",
        speed: float = 1.0,
        max_seqs: int | None = None,
        model_id: str | None = None,
        kv_tokens: int | None = None,
    ) -> ModelProfile:
        """This profile with the command-line knobs applied (``--latency``, ``--speed``, ...)."""
        changes: dict[str, object] = {}
        if latency == "zero":
            changes.update(
                prefill_tokens_per_s=float("inf"),
                vision_encode_s_per_token=0.0,
                decode_step_s=0.0,
                batch_slowdown=0.0,
                max_seqs=1_000_000,
                kv_tokens=1 << 62,
            )
        elif speed != 1.0:
            if speed <= 0:
                raise ValueError("speed must be > 0")
            changes.update(
                prefill_tokens_per_s=self.prefill_tokens_per_s * speed,
                vision_encode_s_per_token=self.vision_encode_s_per_token / speed,
                decode_step_s=self.decode_step_s / speed,
            )
        if max_seqs is not None:
            if max_seqs < 1:
                raise ValueError("max-seqs must be >= 1")
            changes["max_seqs"] = max_seqs
        if kv_tokens is not None:
            changes["kv_tokens"] = kv_tokens
        if model_id:
            changes["model_id"] = model_id
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


PROFILES: dict[str, ModelProfile] = {
    p.key: p
    for p in (
        ModelProfile(
            key="llama-3.2-11b-vision",
            model_id="meta-llama/Llama-3.2-11B-Vision-Instruct",
            token_rule="llama-3.2-vision",
            context_length=131_072,
            price_in_per_m=0.049,
            price_out_per_m=0.049,
            prefill_tokens_per_s=12_000.0,
            vision_encode_s_per_token=0.000_02,  # ~32 ms per 560 px tile (1601 tokens)
            decode_step_s=0.020,
            batch_slowdown=0.05,
            max_seqs=16,
            kv_tokens=400_000,
            gpu="1x A100-80GB (simulated)",
        ),
        ModelProfile(
            key="llama-3.2-90b-vision",
            model_id="meta-llama/Llama-3.2-90B-Vision-Instruct",
            token_rule="llama-3.2-vision",
            context_length=131_072,
            price_in_per_m=0.35,
            price_out_per_m=0.40,
            prefill_tokens_per_s=3_000.0,
            vision_encode_s_per_token=0.000_05,
            decode_step_s=0.045,
            batch_slowdown=0.08,
            max_seqs=8,
            kv_tokens=200_000,
            gpu="4x A100-80GB (simulated)",
        ),
        ModelProfile(
            key="qwen2.5-vl-7b",
            model_id="Qwen/Qwen2.5-VL-7B-Instruct",
            token_rule="qwen2-vl",
            context_length=32_768,
            price_in_per_m=0.20,
            price_out_per_m=0.20,
            prefill_tokens_per_s=15_000.0,
            vision_encode_s_per_token=0.000_03,
            decode_step_s=0.015,
            batch_slowdown=0.04,
            max_seqs=32,
            kv_tokens=500_000,
            gpu="1x A100-80GB (simulated)",
        ),
        ModelProfile(
            key="llava-1.5-7b",
            model_id="llava-hf/llava-1.5-7b-hf",
            token_rule="llava-1.5",
            context_length=4_096,
            price_in_per_m=0.10,
            price_out_per_m=0.10,
            prefill_tokens_per_s=15_000.0,
            vision_encode_s_per_token=0.000_02,
            decode_step_s=0.012,
            batch_slowdown=0.04,
            max_seqs=32,
            kv_tokens=300_000,
            max_images=4,
            gpu="1x A10G-24GB (simulated)",
        ),
    )
}

DEFAULT_PROFILE = "llama-3.2-11b-vision"


def get_profile(key: str) -> ModelProfile:
    try:
        return PROFILES[key]
    except KeyError:
        raise ValueError(f"unknown model profile {key!r}; known: {', '.join(PROFILES)}") from None


def describe_profiles() -> str:
    """One line per profile, for ``eyechart serve --help``."""
    lines = []
    for p in PROFILES.values():
        lines.append(
            f"  {p.key:22} {p.model_id} · tokens {p.token_rule} · context {p.context_length:,} · "
            f"${p.price_in_per_m}/${p.price_out_per_m} per M in/out · "
            f"prefill {p.prefill_tokens_per_s:,.0f} tok/s"
            f" · ITL {p.decode_step_s * 1000:.0f} ms (+{p.batch_slowdown:.0%}/seq) · {p.max_seqs} seqs"
        )
    return "\n".join(lines)
