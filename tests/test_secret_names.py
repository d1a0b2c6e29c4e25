"""One list of secret-looking names (``eyechart.secrets``): what it catches, and that the load report and
the request reproducer both honour it: a pasted reproducer reads each secret from an environment variable
(the key from ``$EYECHART_API_KEY``, a secret-named header from the variable named after it) and sends
everything else exactly as it was sent."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from eyechart.load.gates import evaluate
from eyechart.load.records import RequestRecord
from eyechart.load.stats import LoadStats
from eyechart.report.load import write_reports
from eyechart.secrets import KEY_PLACEHOLDER, is_secret_name
from eyechart.wire.reproducer import curl_reproducer, shown_headers

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


def test_reproducer_reads_every_secret_named_header_from_its_own_variable() -> None:
    headers = {"Authorization": "Bearer sk-hdr-0", "X-Auth-Token": "tok-hdr-1", "api-key": "gw-hdr-2"}
    curl = curl_reproducer(
        "POST", "http://127.0.0.1:9/v1/chat/completions", {"a": 1}, {**headers, "X-Route": "blue"}
    )
    assert not any(value in curl for value in ("sk-hdr-0", "tok-hdr-1", "gw-hdr-2"))
    assert f'-H "Authorization: Bearer {KEY_PLACEHOLDER}"' in curl
    assert '-H "X-Auth-Token: $X_AUTH_TOKEN"' in curl and '-H "api-key: $API_KEY"' in curl
    assert "-H 'X-Route: blue'" in curl


def _pasted_headers(command: str, variables: dict[str, str]) -> list[str]:
    """The -H arguments curl gets when ``command`` is pasted into bash with ``variables`` set."""
    show = 'curl() { while [ $# -gt 0 ]; do [ "$1" = -H ] && printf "%s\\n" "$2"; shift; done; }\n'
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", **variables}
    out = subprocess.run(["bash", "-c", show + command], capture_output=True, text=True, env=env, timeout=20)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_a_pasted_reproducer_fills_in_secrets_and_keeps_everything_else_literal() -> None:
    key, token, odd = "sk-real-9", "gw tok'en\"$1", "v$HOME`x`"
    headers = {
        "Authorization": f"Bearer {key}",
        "X-Gateway-Token": token,  # a value the shell must not touch once filled in
        "X-Route": '$HOME `id` "blue"!',  # not a secret: literal, never expanded
        "Weird$Name-Token": odd,  # a name that double quotes could not hold as is
        "X-Tag": f"prefix-{key}-suffix",  # the key inside another value
    }
    curl = curl_reproducer("GET", "http://127.0.0.1:9/v1/models", None, headers, secret=key)
    assert key not in curl and token not in curl and odd not in curl
    variables = {"EYECHART_API_KEY": key, "X_GATEWAY_TOKEN": token, "WEIRD_NAME_TOKEN": odd}
    assert _pasted_headers(curl, variables) == [f"{name}: {value}" for name, value in headers.items()]
    # a deliberately wrong key (a probe's) is shown as sent, so the pasted command repeats the 401
    wrong = curl_reproducer(
        "GET", "http://127.0.0.1:9/v1/models", None, {"Authorization": "Bearer no"}, secret=key
    )
    assert _pasted_headers(wrong, variables) == ["Authorization: Bearer no"]


def test_shown_headers_are_shown_the_same_again() -> None:
    headers = {"Authorization": "Bearer sk-1", "X-Gateway-Token": "gw-1", "X-Route": "blue"}
    shown = shown_headers(headers)
    assert shown == {
        "Authorization": f"Bearer {KEY_PLACEHOLDER}",
        "X-Gateway-Token": "$X_GATEWAY_TOKEN",
        "X-Route": "blue",
    }
    assert shown_headers(shown) == shown
    assert curl_reproducer("GET", "http://h/x", None, shown) == curl_reproducer(
        "GET", "http://h/x", None, headers
    )
