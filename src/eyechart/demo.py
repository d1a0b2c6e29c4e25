"""`make demo`: the main job end to end against the embedded reference target.

1. start the reference target (and the fixture server for URL images);
2. show what it answers to the requests a user first tries — a URL image, a base64 image, two images,
   a streamed answer, an OCR prompt on a rendered invoice — and keep those answers (``answers.json``);
3. run the conformance suite against it (``eyechart conform``);
4. run a short load run (``eyechart load``) with SLO gates;
5. print the report folder.

Everything goes into one folder under ``reports/``. The steps call the same commands a user would run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx
from rich.console import Console

from eyechart.images import FixtureServer, data_uri, get
from eyechart.runs import new_run_dir
from eyechart.target.launch import RunningTarget, start_target

SHOWCASE_PROMPTS: list[tuple[str, str, list[tuple[str, str]]]] = [
    # (title, prompt, [(fixture, transport)])
    ("a URL image", "What is in this image?", [("colour-red", "url")]),
    ("a base64 image", "Describe this image.", [("jpeg-rgb", "base64")]),
    ("two images", "Compare these two images.", [("colour-blue", "base64"), ("colour-yellow", "url")]),
    ("an OCR prompt on a rendered invoice", "Read the text in this document.", [("doc-invoice", "base64")]),
]


def _body(model: str, prompt: str, images: list[str], stream: bool = False) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": u}} for u in images]
    parts.append({"type": "text", "text": prompt})
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": parts}],
        "max_tokens": 120,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def showcase(target: RunningTarget, fixtures: FixtureServer, console: Console) -> list[dict[str, Any]]:
    """Send the first requests a user tries and keep what came back."""
    answers: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {target.api_key}"}
    url = f"{target.base_url}/chat/completions"
    with httpx.Client(timeout=60, headers=headers) as client:
        for title, prompt, images in SHOWCASE_PROMPTS:
            urls = [
                fixtures.url(f"/img/{name}") if how == "url" else data_uri(get(name).path)
                for name, how in images
            ]
            reply = client.post(url, json=_body(target.model, prompt, urls)).json()
            text = reply["choices"][0]["message"]["content"]
            answers.append(
                {"case": title, "images": images, "prompt": prompt, "answer": text, "usage": reply["usage"]}
            )
            console.print(f"[bold]{title}[/] → {text[:110]}{'…' if len(text) > 110 else ''}")
        # A streamed answer: count the content chunks as they arrive.
        t0 = time.monotonic()
        chunks, first, content = 0, None, []
        body = _body(target.model, "Describe this image.", [data_uri(get("webp-lossy").path)], stream=True)
        with client.stream("POST", url, json=body) as resp:
            for line in resp.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                delta = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
                if delta:
                    chunks += 1
                    content.append(delta)
                    first = first if first is not None else time.monotonic() - t0
        total = time.monotonic() - t0
        answers.append(
            {
                "case": "a streamed answer",
                "answer": "".join(content),
                "content_chunks": chunks,
                "ttft_s": round(first or 0.0, 3),
                "total_s": round(total, 3),
            }
        )
        console.print(
            f"[bold]a streamed answer[/] → {chunks} content chunks, "
            f"first after {first or 0:.3f} s of {total:.3f} s"
        )
    return answers


def _eyechart(*args: str) -> int:
    return subprocess.call([sys.executable, "-m", "eyechart", *args])


def main() -> int:
    console = Console()
    run_dir = new_run_dir(os.environ.get("EYECHART_DEMO_DIR", "reports"), "demo")
    console.rule("eyechart demo: starting the embedded reference target")
    with start_target(args=["--allow-private-urls"]) as target, FixtureServer() as fixtures:
        console.print(f"target {target.base_url}  model {target.model}  (pid {target.pid})")
        answers = showcase(target, fixtures, console)
        (run_dir / "answers.json").write_text(json.dumps(answers, indent=2), encoding="utf-8")
        common = ["--base-url", target.base_url, "--report-dir", str(run_dir)]
        env_key = target.api_key
        os.environ["EYECHART_API_KEY"] = env_key  # passed by environment, never on a command line
        console.rule("conformance: eyechart conform")
        conform = _eyechart("conform", *common)
        console.rule("load: eyechart load (captioning-mixed, Poisson 1.5 req/s, 20 s)")
        load = _eyechart(
            "load",
            *common,
            "--workload",
            "captioning-mixed",
            "--rate",
            # The default engine (Llama-3.2-11B-Vision on one A100) prefills a 4-tile image in ~1 s of
            # steps; 1.5 req/s keeps it under its knee so the demo's SLO gate shows a healthy run.
            "1.5",
            "--arrival",
            "poisson",
            "--duration",
            "20s",
            "--slo",
            "ttft_p95<=3s,error_rate<=1%",
        )
    console.rule("done")
    console.print(f"conform exit {conform}, load exit {load}")
    console.print(f"reports: [bold]{run_dir.resolve()}[/]")
    return 0 if conform == 0 and load == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
