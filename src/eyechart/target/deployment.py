"""A deployment: one model on its GPUs with an engine's settings. The numbers the step loop runs on.

The step-time model is a roofline, the usual first-order model of transformer inference:

    step_s = (overhead + max(memory_s, compute_s) + encoder_s) / speed
    memory_s  = (weight bytes + KV bytes of every token the batch attends to) / (bandwidth x 0.8)
    compute_s = 2 FLOPs x language-model parameters x tokens in the step / (BF16 FLOP/s x 0.5)
    encoder_s = image tokens starting prefill this step x encoder FLOPs per image token / (BF16 FLOP/s x 0.5)

so a decode step of a small batch is bound by reading the weights once (memory), grows with the batch's
context length (KV reads), and becomes compute-bound once the batch (or a prefill chunk) holds enough
tokens. The public figures (bandwidth, FLOP/s, weight bytes, KV bytes per token) come from ``gpus`` and
``models``; the efficiencies and the per-step overhead below are assumptions, stated as such. Attention
FLOPs, tensor-parallel communication and CUDA-graph effects are left out.

The KV cache gets what vLLM would give it: ``--gpu-memory-utilization`` (0.9) of the GPUs' memory minus
the weights minus an activation reserve per GPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from eyechart.target.gpus import GPUS, GiB, Gpu, get_gpu
from eyechart.target.models import PROFILES, ModelProfile, get_profile

GPU_MEMORY_UTILIZATION = 0.9  # vLLM's default --gpu-memory-utilization
NON_KV_BYTES_PER_GPU = 3 * GiB  # assumed: activations of one step at the token budget, CUDA graphs
BANDWIDTH_EFFICIENCY = 0.8  # assumed: share of peak HBM bandwidth a decode step achieves
COMPUTE_EFFICIENCY = 0.5  # assumed: model FLOPs utilisation of prefill-sized matrix products
STEP_OVERHEAD_S = 0.002  # assumed: scheduling, sampling, detokenising and launches, per step


@dataclass(frozen=True)
class Deployment:
    """One replica: ``model`` on ``gpus`` x ``gpu``, at most ``max_seqs`` sequences and ``kv_tokens``
    KV-cache tokens, ``max_batched_tokens`` tokens per step (chunked prefill), time divided by ``speed``."""

    model: ModelProfile
    gpu: Gpu
    gpus: int
    max_seqs: int
    max_batched_tokens: int
    kv_tokens: int
    speed: float = 1.0
    zero_latency: bool = False  # no simulated time and no limits: the target is never the bottleneck

    def step_s(self, tokens: int, kv_read: int = 0, image_tokens: int = 0) -> float:
        """One engine step that processes ``tokens`` tokens (decodes + prefill chunks), attends over
        ``kv_read`` cached tokens in all, and encodes ``image_tokens`` image tokens."""
        if self.zero_latency:
            return 0.0
        m = self.model
        bandwidth = self.gpu.bandwidth * self.gpus * BANDWIDTH_EFFICIENCY
        flops = self.gpu.bf16_flops * self.gpus * COMPUTE_EFFICIENCY
        memory = (m.weight_bytes + kv_read * m.kv_bytes_per_token) / bandwidth
        compute = 2 * m.lm_params * tokens / flops
        encode = image_tokens * m.encoder_flops_per_image_token / flops
        return (STEP_OVERHEAD_S + max(memory, compute) + encode) / self.speed

    def describe(self) -> str:
        lone = self.step_s(1, 1000)
        chunk = self.step_s(self.max_batched_tokens)
        return (
            f"{self.model.key} on {self.gpus}x {self.gpu.key}: KV cache {self.kv_tokens:,} tokens, "
            f"{self.max_seqs} seqs, {self.max_batched_tokens} tokens/step\n"
            f"      decode step {lone * 1e3:.1f} ms (one sequence, 1k context); "
            f"a full prefill chunk {chunk * 1e3:.0f} ms"
        )


def kv_capacity(model: ModelProfile, gpu: Gpu, gpus: int) -> int:
    """KV-cache tokens left once the weights and the activation reserve are placed."""
    free = gpu.memory_bytes * gpus * GPU_MEMORY_UTILIZATION - model.weight_bytes - NON_KV_BYTES_PER_GPU * gpus
    return int(free // model.kv_bytes_per_token)


def deployment(
    profile: str | ModelProfile,
    gpu: str | None = None,
    *,
    gpus: int | None = None,
    max_seqs: int | None = None,
    max_batched_tokens: int | None = None,
    kv_tokens: int | None = None,
    speed: float = 1.0,
    zero_latency: bool = False,
) -> Deployment:
    """The deployment for a profile on a GPU (default: the profile's), with any setting overridden."""
    model = get_profile(profile) if isinstance(profile, str) else profile
    hw = get_gpu(gpu or model.gpu)
    n = gpus or model.gpus
    if n < 1:
        raise ValueError("gpus must be >= 1")
    if speed <= 0:
        raise ValueError("speed must be > 0")
    if max_seqs is not None and max_seqs < 1:
        raise ValueError("max-seqs must be >= 1")
    if max_batched_tokens is not None and max_batched_tokens < 1:
        raise ValueError("max-batched-tokens must be >= 1")
    capacity = kv_capacity(model, hw, n) if kv_tokens is None else kv_tokens
    if capacity < 1:
        raise ValueError(
            f"{model.key} ({model.weight_bytes / 1e9:.0f} GB of weights) does not fit on {n}x {hw.key}; "
            "give more GPUs (--gpus) or a bigger GPU"
        )
    d = Deployment(
        model=model,
        gpu=hw,
        gpus=n,
        max_seqs=max_seqs or hw.max_seqs,
        max_batched_tokens=max_batched_tokens or hw.max_batched_tokens,
        kv_tokens=capacity,
        speed=speed,
    )
    if zero_latency:
        d = dataclasses.replace(d, zero_latency=True, max_seqs=1 << 30, kv_tokens=1 << 62)
    return d


def describe_deployments() -> str:
    """Every profile on its default GPU and on an H100, for ``eyechart serve --help``."""
    lines = []
    for p in PROFILES.values():
        for g in dict.fromkeys((p.gpu, "h100-sxm")):
            try:
                lines.append("  " + deployment(p, g).describe())
            except ValueError:
                continue
    lines.append("GPUs (--gpu):")
    lines += [f"  {g.key:10} {g.source}" for g in GPUS.values()]
    return "\n".join(lines)
