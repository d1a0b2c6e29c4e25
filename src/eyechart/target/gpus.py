"""The GPUs the reference target can pretend to run on: public datasheet figures, nothing measured here.

Only the figures the step-time model needs: memory (what holds weights and the KV cache), peak memory
bandwidth (what a decode step is bound by) and dense BF16 tensor throughput (what a prefill chunk and a
vision encoder are bound by). ``max_batched_tokens`` and ``max_seqs`` are vLLM's defaults for its
OpenAI server on that GPU (``EngineArgs.get_batch_defaults`` in vllm/engine/arg_utils.py: 8192 tokens and
1024 sequences on GPUs with >= 70 GiB that are not A100s, 2048 and 256 otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

GiB = 1 << 30


@dataclass(frozen=True)
class Gpu:
    key: str  # what --gpu takes
    name: str
    memory_bytes: float
    bandwidth: float  # peak memory bandwidth, bytes/s
    bf16_flops: float  # peak dense BF16 tensor FLOP/s (no sparsity)
    source: str

    @property
    def max_batched_tokens(self) -> int:
        """vLLM's default chunked-prefill token budget per step on this GPU."""
        return 8192 if self._large else 2048

    @property
    def max_seqs(self) -> int:
        """vLLM's default ``max_num_seqs`` on this GPU."""
        return 1024 if self._large else 256

    @property
    def _large(self) -> bool:
        """vLLM's rule for its larger defaults: at least 70 GiB, and not an A100."""
        return self.memory_bytes >= 70 * GiB and "A100" not in self.name


GPUS: dict[str, Gpu] = {
    g.key: g
    for g in (
        Gpu(
            key="h100-sxm",
            name="NVIDIA H100 SXM5 80GB",
            memory_bytes=80 * GiB,
            bandwidth=3.35e12,
            bf16_flops=989e12,
            source="NVIDIA H100 Tensor Core GPU datasheet: 80 GB HBM3, 3.35 TB/s, BF16 989 TFLOPS dense "
            "(1,979 with sparsity)",
        ),
        Gpu(
            key="a100-80gb",
            name="NVIDIA A100 SXM4 80GB",
            memory_bytes=80 * GiB,
            bandwidth=2.039e12,
            bf16_flops=312e12,
            source="NVIDIA A100 Tensor Core GPU datasheet: 80 GB HBM2e, 2,039 GB/s, BF16 312 TFLOPS dense",
        ),
        Gpu(
            key="a10",
            name="NVIDIA A10 24GB",
            memory_bytes=24 * GiB,
            bandwidth=600e9,
            bf16_flops=125e12,
            source="NVIDIA A10 Tensor Core GPU datasheet: 24 GB GDDR6, 600 GB/s, BF16 125 TFLOPS dense",
        ),
    )
}


def get_gpu(key: str) -> Gpu:
    try:
        return GPUS[key]
    except KeyError:
        raise ValueError(f"unknown GPU {key!r}; known: {', '.join(GPUS)}") from None
