"""Workload mixes follow their weights over the run, by quota: the URL-image share of captioning-mixed."""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
from pathlib import Path

from eyechart.load.workloads import Deck, build_templates, load_workload


def test_deck_keeps_the_url_share_within_one_image_at_every_point() -> None:
    wl = load_workload("captioning-mixed")
    templates = build_templates(wl, "m", url_for=lambda name: f"http://127.0.0.1:9/img/{name}")
    images = sum(t.images for t in templates)
    assert sum(t.url_images for t in templates) == round(0.3 * images)  # built by quota
    deck = Deck(templates, random.Random(7))
    for _ in range(30 * len(templates)):  # whole cycles
        deck.next()
        assert abs(deck.url_images - 0.3 * deck.images) <= 1.0, (deck.url_images, deck.images)
    # each cycle sends every template once: prompts, image counts and caps keep their quotas too
    seen = [deck.next() for _ in range(len(templates))]
    assert sorted(map(id, seen)) == sorted(map(id, templates))


def test_a_run_sends_30_percent_url_images_within_one_image(tmp_path: Path) -> None:
    env = {**os.environ, "NO_COLOR": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "eyechart", "load", "--quiet", "--report-dir", str(tmp_path),
         "--workload", "captioning-mixed", "--users", "4", "--requests", "45", "--min-requests", "10",
         "--max-loop-lag-ms", "50", "--target-arg=--speed=20"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    run = next(tmp_path.glob("*-load"))
    with gzip.open(run / "requests.jsonl.gz", "rt") as f:
        records = [json.loads(line) for line in f]
    assert len(records) == 45 and all(rec["error_class"] is None for rec in records)
    images = sum(rec["images"] for rec in records)
    served = int(out.split("fixture server: ")[1].split()[0])  # the target fetched every URL image
    assert abs(served - 0.3 * images) <= 1.0, (served, images)
