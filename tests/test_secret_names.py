"""One list of secret-looking names (``eyechart.secrets``): what it catches, and that the load report and
the request reproducer both honour it."""

from __future__ import annotations

from pathlib import Path

import pytest

from eyechart.load.gates import evaluate
from eyechart.load.records import RequestRecord
from eyechart.load.stats import LoadStats
from eyechart.report.load import write_reports
from eyechart.secrets import KEY_PLACEHOLDER, is_secret_name
from eyechart.wire.exchange import curl_reproducer

MS = 1_000_000
SECRET_FIELDS = {
    "api_key": "sk-field-1",
    "Authorization": "Bearer sk-field-2",
    "X-Auth-Token": "tok-field-3",
    "client_secret": "cs-field-4",
    "db_password": "pw-field-5",
    "session_cookie": "ck-field-6",
}
PLAIN_FIELDS = {"model": "m", "max_tokens": 64, "author": "ops", "tokens_estimated": 0, "monitor": "x"}


@pytest.mark.parametrize("name", [*SECRET_FIELDS, "apikey", "X-Api-Key", "api-key", "x-goog-api-key"])
def test_secret_names_are_recognised(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", [*PLAIN_FIELDS, "completion_tokens", "X-Request-Id", "X-Route", "authored"])
def test_ordinary_names_are_not_secrets(name: str) -> None:
    assert not is_secret_name(name)


def test_secret_named_run_fields_never_reach_the_load_report(tmp_path: Path) -> None:
    stats = LoadStats()
    t0 = 10**12
    for i in range(5):
        t = t0 + i * 100 * MS
        stats.add(
            RequestRecord(
                f"r{i}", "measure", "ocr", True, "base64", t, t + MS,
                t_head=t + 5 * MS, t_first=t + 50 * MS, t_end=t + 200 * MS, status=200,
                content_chunks=4, prompt_tokens=100, completion_tokens=4, images=1,
            ),
            [50 * MS] * 3,
        )  # fmt: skip
    summary = stats.summary({**SECRET_FIELDS, **PLAIN_FIELDS, "measure_duration_s": 1.0})
    assert set(PLAIN_FIELDS) <= set(summary["run"]) and not set(SECRET_FIELDS) & set(summary["run"])
    write_reports(tmp_path, summary, evaluate(summary, []), stats, stages=[])
    written = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert {"summary.json", "index.html"} <= {f.name for f in written}
    for f in written:
        data = f.read_bytes()
        for value in SECRET_FIELDS.values():
            assert value.encode() not in data, (f.name, value)


def test_reproducer_masks_every_secret_named_header() -> None:
    headers = {"X-Auth-Token": "tok-hdr-1", "api-key": "gw-hdr-2", "X-Route": "blue"}
    curl = curl_reproducer("POST", "http://127.0.0.1:9/v1/chat/completions", {"a": 1}, headers)
    assert "tok-hdr-1" not in curl and "gw-hdr-2" not in curl
    assert f'-H "X-Auth-Token: {KEY_PLACEHOLDER}"' in curl and "X-Route: blue" in curl
