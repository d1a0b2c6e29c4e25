"""Model profiles of the reference target: what a served model counts, costs, and weighs on a GPU.

A profile is one model as a server sees it: its image token rule (CONTRACT.md section 8), context
length, price (for ``usage.estimated_cost``), and the architecture figures the simulated engine's step
time is computed from (``deployment.Deployment``): weight bytes, parameters a token goes through, KV-cache
bytes per token, vision-encoder FLOPs per image token. Each figure says where it comes from: the
model's published ``config.json`` and parameter count on Hugging Face, in BF16 (2 bytes per parameter).

KV bytes per token = 2 (K and V) x layers x KV heads x head dim x 2 bytes. Image tokens are held in the
KV cache and prefilled like text tokens (the target already counts them as prompt tokens); for Llama 3.2
Vision, whose image tokens really live in 8 cross-attention layers, that over-states their KV cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TokenRule = Literal["qwen2-vl", "llama-3.2-vision", "llava-1.5"]


@dataclass(frozen=True)
class ModelProfile:
    key: str  # what --model-profile takes
    model_id: str  # the id served in /models and echoed in responses
    token_rule: TokenRule
    context_length: int
    price_in_per_m: float  # USD per million prompt tokens
    price_out_per_m: float  # USD per million completion tokens
    weight_bytes: float  # all weights in BF16: read once per step
    lm_params: float  # parameters one (text or image) token goes through in the language model
    kv_bytes_per_token: int
    encoder_flops_per_image_token: float  # vision encoder work behind one image token of the prompt
    gpu: str  # the default --gpu
    gpus: int = 1  # tensor-parallel GPUs of one replica
    max_images: int | None = None  # None: no count limit (the default profile states none)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return round(
            (prompt_tokens * self.price_in_per_m + completion_tokens * self.price_out_per_m) / 1e6, 10
        )


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
            # 10.6 B parameters (model card) -> 21.3 GB of BF16 safetensors.
            weight_bytes=21.3e9,
            # The text model: Llama 3.1 8B (8.0 B) plus 8 cross-attention layers, ~9.8 B in all.
            lm_params=9.8e9,
            # config.json text_config: 40 layers of which 8 cross-attention (32 self-attention), 8 KV
            # heads, head dim 4096 / 32 = 128: 2 x 32 x 8 x 128 x 2 B = 131,072 B.
            kv_bytes_per_token=131_072,
            # The ViT-H/14 image encoder (32 + 8 global layers, ~0.85 B parameters) sees one 14 px patch
            # per image token: 2 FLOPs x 0.85 B per token.
            encoder_flops_per_image_token=2 * 0.85e9,
            gpu="a100-80gb",
        ),
        ModelProfile(
            key="llama-3.2-90b-vision",
            model_id="meta-llama/Llama-3.2-90B-Vision-Instruct",
            token_rule="llama-3.2-vision",
            context_length=131_072,
            price_in_per_m=0.35,
            price_out_per_m=0.40,
            # 88.6 B parameters (model card) -> 177 GB of BF16: four 80 GB GPUs.
            weight_bytes=177e9,
            lm_params=87.7e9,
            # config.json text_config: 100 layers of which 20 cross-attention (80 self-attention), 8 KV
            # heads of dim 128: 2 x 80 x 8 x 128 x 2 B = 327,680 B.
            kv_bytes_per_token=327_680,
            encoder_flops_per_image_token=2 * 0.85e9,
            gpu="a100-80gb",
            gpus=4,
        ),
        ModelProfile(
            key="qwen2.5-vl-7b",
            model_id="Qwen/Qwen2.5-VL-7B-Instruct",
            token_rule="qwen2-vl",
            context_length=32_768,
            price_in_per_m=0.20,
            price_out_per_m=0.20,
            # 8.29 B parameters (model card) -> 16.6 GB of BF16.
            weight_bytes=16.6e9,
            # The language model is Qwen2.5-7B: 7.6 B parameters.
            lm_params=7.6e9,
            # config.json: 28 layers, 4 KV heads, head dim 3584 / 28 = 128: 2 x 28 x 4 x 128 x 2 B.
            kv_bytes_per_token=57_344,
            # The ViT (~0.67 B parameters) sees 2 x 2 patches of 14 px per image token (merged after it).
            encoder_flops_per_image_token=2 * 0.67e9 * 4,
            gpu="a100-80gb",
        ),
        ModelProfile(
            key="llava-1.5-7b",
            model_id="llava-hf/llava-1.5-7b-hf",
            token_rule="llava-1.5",
            context_length=4_096,
            price_in_per_m=0.10,
            price_out_per_m=0.10,
            # 7.06 B parameters -> 14.1 GB of BF16.
            weight_bytes=14.1e9,
            lm_params=6.7e9,  # Vicuna-7B (Llama 2 7B)
            # Llama 2 7B: 32 layers, 32 KV heads (no GQA), head dim 128: 2 x 32 x 32 x 128 x 2 B.
            kv_bytes_per_token=524_288,
            # CLIP ViT-L/14 at 336 px (0.30 B parameters), one patch per image token.
            encoder_flops_per_image_token=2 * 0.30e9,
            gpu="a10",
            max_images=4,
        ),
    )
}

DEFAULT_PROFILE = "llama-3.2-11b-vision"


def get_profile(key: str) -> ModelProfile:
    try:
        return PROFILES[key]
    except KeyError:
        raise ValueError(f"unknown model profile {key!r}; known: {', '.join(PROFILES)}") from None
