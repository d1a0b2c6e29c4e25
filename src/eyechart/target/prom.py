"""``GET /metrics``: the target's own counters in the Prometheus text format (version 0.0.4).

Each metric is defined once here, with its name, type and meaning. Gauges of the engine (running,
waiting, KV use) are read from the engine at scrape time; counters are bumped by the app. The engine's
gauges and token counters are also given under vLLM's names (``vllm:num_requests_running``, ...,
labelled ``model_name`` as vLLM does), so dashboards and autoscalers written for vLLM read the target
as they read a vLLM server. vLLM's ``*_usage_perc`` gauges are fractions (0..1), despite the name.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from eyechart.target.engine import Engine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Error classes as the harness names them (DESIGN.md): 4xx, 429, 5xx, plus faults the target injected.
ERROR_CLASSES = ("4xx", "429", "5xx", "disconnect", "injected")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    """Exact: counters are integers, and ``:g`` would turn 1,002,514 into 1.00251e+06."""
    if isinstance(value, int) or (value.is_integer() and abs(value) < 2**53):
        return str(int(value))
    return repr(value)


@dataclass
class Metrics:
    requests: Counter[tuple[str, int]] = field(default_factory=Counter)  # (route kind, status)
    errors: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    image_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0

    def count_request(self, kind: str, status: int) -> None:
        self.requests[(kind, status)] += 1
        if status == 429:
            self.errors["429"] += 1
        elif 400 <= status < 500:
            self.errors["4xx"] += 1
        elif status >= 500:
            self.errors["5xx"] += 1

    def count_tokens(self, prompt: int, image: int, completion: int, images: int) -> None:
        self.prompt_tokens += prompt
        self.image_tokens += image
        self.completion_tokens += completion
        self.images += images

    def render(self, engine: Engine, model: str) -> str:
        m = f'model="{_escape(model)}"'
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                text = _number(value)
                out.append(f"{name}{{{labels}}} {text}" if labels else f"{name} {text}")

        metric(
            "eyechart_requests_running",
            "gauge",
            "Sequences the simulated engine is generating now.",
            [(m, engine.running)],
        )
        metric(
            "eyechart_requests_waiting",
            "gauge",
            "Requests admitted by HTTP but waiting in the engine's FIFO queue.",
            [(m, engine.waiting)],
        )
        metric(
            "eyechart_kv_tokens_used",
            "gauge",
            "KV-cache tokens reserved by running sequences.",
            [(m, engine.kv_used)],
        )
        metric(
            "eyechart_kv_tokens_capacity",
            "gauge",
            "KV-cache capacity in tokens of the simulated deployment.",
            [(m, engine.deployment.kv_tokens)],
        )
        v = f'model_name="{_escape(model)}"'
        vllm = (
            (
                "vllm:num_requests_running",
                "gauge",
                "Number of requests in model execution batches.",
                engine.running,
            ),
            (
                "vllm:num_requests_waiting",
                "gauge",
                "Number of requests waiting to be processed.",
                engine.waiting,
            ),
            (
                "vllm:gpu_cache_usage_perc",
                "gauge",
                "GPU KV-cache usage. 1 means 100 percent usage.",
                engine.kv_usage,
            ),
            (
                "vllm:kv_cache_usage_perc",
                "gauge",
                "KV-cache usage. 1 means 100 percent usage.",
                engine.kv_usage,
            ),
            (
                "vllm:prompt_tokens_total",
                "counter",
                "Number of prefill tokens processed.",
                self.prompt_tokens,
            ),
            (
                "vllm:generation_tokens_total",
                "counter",
                "Number of generation tokens processed.",
                self.completion_tokens,
            ),
        )
        for name, kind, help_text, value in vllm:
            metric(name, kind, help_text, [(v, value)])
        metric(
            "eyechart_prompt_tokens_total",
            "counter",
            "Prompt tokens (text and image) of answered requests.",
            [(m, self.prompt_tokens)],
        )
        metric(
            "eyechart_image_tokens_total",
            "counter",
            "The image share of the prompt tokens.",
            [(m, self.image_tokens)],
        )
        metric(
            "eyechart_completion_tokens_total",
            "counter",
            "Completion tokens generated.",
            [(m, self.completion_tokens)],
        )
        metric("eyechart_images_total", "counter", "Images decoded in answered requests.", [(m, self.images)])
        metric(
            "eyechart_requests_total",
            "counter",
            "HTTP requests by route kind and status.",
            [
                (f'{m},route="{_escape(kind)}",status="{status}"', n)
                for (kind, status), n in sorted(self.requests.items())
            ],
        )
        metric(
            "eyechart_errors_total",
            "counter",
            "Errors by class: 4xx, 429, 5xx, disconnect (client gone mid-answer), injected (--faults).",
            [(f'{m},class="{c}"', self.errors.get(c, 0)) for c in ERROR_CLASSES],
        )
        return "\n".join(out) + "\n"
