"""Every documented user mistake ends before anything starts: one line naming the flag or file, exit 2,
no traceback. Each case runs the real ``eyechart`` command in a subprocess (as a user would type it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eyechart.target.launch import RunningTarget

WORKLOADS = Path(__file__).resolve().parents[1] / "loadtests" / "workloads"
MISTAKE_BOUND_S = 20  # "before anything starts": no run, no target, so seconds even on a loaded machine


def _eyechart(*args: str, cwd: Path) -> tuple[int, list[str], float]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "80"}
    for name in ("EYECHART_API_KEY", "EYECHART_BASE_URL", "EYECHART_MODEL"):
        env.pop(name, None)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "eyechart", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return proc.returncode, lines, time.monotonic() - t0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _workload_with(tmp_path: Path, old: str, new: str) -> str:
    text = (WORKLOADS / "captioning-mixed.toml").read_text()
    assert old in text
    path = tmp_path / "mine.toml"
    path.write_text(text.replace(old, new, 1))
    return str(path)


def _assert_one_line(code: int, lines: list[str], elapsed: float, *expected: str) -> None:
    assert code == 2, lines
    assert not any("Traceback" in line for line in lines), lines
    assert len(lines) == 1, f"expected one line, got {len(lines)}: {lines}"
    for part in expected:
        assert part in lines[0], lines[0]
    assert elapsed < MISTAKE_BOUND_S, f"took {elapsed:.0f} s: the run started before the mistake was seen"


# (name, the command after `eyechart`, words the one line must hold); {tmp} is a fresh folder, {file} a
# file in it, {workload:old->new} a copy of captioning-mixed with one edit.
MISTAKES: list[tuple[str, list[str], tuple[str, ...]]] = [
    ("conform --only selects nothing", ["conform", "--only", "auht.*"], ("--only", "auht.*", "--list")),
    (
        "conform --skip removes everything",
        ["conform", "--only", "auth.*", "--skip", "auth.*"],
        ("--only/--skip", "no check"),
    ),
    ("conform --report-dir is a file", ["conform", "--report-dir", "{file}"], ("--report-dir", "is a file")),
    (
        "conform --report-dir under a file",
        ["conform", "--report-dir", "{file}/sub"],
        ("--report-dir", "is a file"),
    ),
    ("conform unknown profile", ["conform", "--profile", "no-such"], ("no profile", "no-such", "deepinfra")),
    ("conform unknown profile knob", ["conform", "--set", "max_imgs=2"], ("max_imgs", "knob")),
    (
        "conform profile knob of the wrong type",
        ["conform", "--set", "max_images=abc"],
        ("max_images", "integer"),
    ),
    ("conform --set without =", ["conform", "--set", "max_images"], ("max_images", "knob=value")),
    ("conform --suite not a folder", ["conform", "--suite", "{file}"], ("--suite", "not a folder")),
    ("conform --fixture-url not http", ["conform", "--fixture-url", "ftp://x"], ("--fixture-url", "http")),
    ("load --slo syntax", ["load", "--slo", "ttft_p95<=2parsecs"], ("--slo", "parsecs")),
    ("load --slo unknown metric", ["load", "--slo", "ttfx_p95<=2s"], ("--slo", "ttfx")),
    ("load --report-dir is a file", ["load", "--report-dir", "{file}"], ("--report-dir", "is a file")),
    (
        "load unknown workload",
        ["load", "--workload", "no-such"],
        ("--workload", "no-such", "captioning-mixed"),
    ),
    ("load workload file missing", ["load", "--workload", "{tmp}/nope.toml"], ("--workload", "nope.toml")),
    (
        "load workload with an unknown fixture",
        ["load", "--workload", '{workload:fixture = "png-rgb"->fixture = "png-rgbb"}'],
        ("--workload", "png-rgbb", "mine.toml"),
    ),
    (
        "load workload with an unknown key",
        ["load", "--workload", "{workload:stream = true->streem = true}"],
        ("--workload", "streem", "mine.toml"),
    ),
    (
        "load workload not TOML",
        ["load", "--workload", "{workload:[[images]]->[[images]}"],
        ("not valid TOML",),
    ),
    ("load --baseline not a run", ["load", "--baseline", "{tmp}"], ("--baseline", "summary.json")),
    ("load --duration unreadable", ["load", "--duration", "5x"], ("duration", "5x")),
    ("load --requests 0", ["load", "--requests", "0"], ("--requests",)),
    ("load --processes 0", ["load", "--processes", "0"], ("--processes",)),
]


@pytest.mark.parametrize(("name", "argv", "expected"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistake_is_one_line_and_exit_2(
    name: str, argv: list[str], expected: tuple[str, ...], tmp_path: Path
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    args = []
    for a in argv:
        if a.startswith("{workload:"):
            old, new = a[len("{workload:") : -1].split("->")
            a = _workload_with(tmp_path, old, new)
        args.append(a.replace("{file}", str(afile)).replace("{tmp}", str(tmp_path)))
    code, lines, elapsed = (
        _eyechart(*args, "--report-dir", str(tmp_path / "reports"), cwd=tmp_path)
        if ("--report-dir" not in args)
        else _eyechart(*args, cwd=tmp_path)
    )
    _assert_one_line(code, lines, elapsed, *expected)
    assert not (tmp_path / "reports").exists(), "a mistake must not leave a run folder behind"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder: no unwritable one to test")
@pytest.mark.parametrize("job", ["conform", "load"])
def test_unwritable_report_dir(job: str, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        _assert_one_line(*_eyechart(job, "--report-dir", str(locked / "r"), cwd=tmp_path), "not writable")
    finally:
        locked.chmod(0o700)


# -- preflight: the same words from both jobs, pointing at the cause ------------------------------------
@pytest.mark.parametrize("job", ["conform", "load"])
def test_missing_key_names_the_key_and_the_local_one(job: str, target: RunningTarget, tmp_path: Path) -> None:
    code, lines, elapsed = _eyechart(
        job, "--base-url", target.base_url, "--report-dir", str(tmp_path), cwd=tmp_path
    )
    lines = [line for line in lines if not line.startswith("fixture server")]
    _assert_one_line(code, lines, elapsed, "HTTP 401", "--api-key", "EYECHART_API_KEY", "eyechart-local")


@pytest.mark.parametrize("job", ["conform", "load"])
def test_wrong_key_says_refused(job: str, target: RunningTarget, tmp_path: Path) -> None:
    code, lines, elapsed = _eyechart(
        job,
        "--base-url",
        target.base_url,
        "--api-key",
        "sk-wrong",
        "--report-dir",
        str(tmp_path),
        cwd=tmp_path,
    )
    lines = [line for line in lines if not line.startswith("fixture server")]
    _assert_one_line(code, lines, elapsed, "HTTP 401", "refused", "--api-key")
    assert "sk-wrong" not in lines[0]


@pytest.mark.parametrize("job", ["conform", "load"])
def test_wrong_base_path_suggests_v1(job: str, target: RunningTarget, tmp_path: Path) -> None:
    url = f"{target.root_url}/v2"
    code, lines, elapsed = _eyechart(
        job, "--base-url", url, "--api-key", target.api_key, "--report-dir", str(tmp_path), cwd=tmp_path
    )
    lines = [line for line in lines if not line.startswith("fixture server")]
    _assert_one_line(code, lines, elapsed, "HTTP 404", "base path", f"{target.root_url}/v1 ", "/v1/openai")


@pytest.mark.parametrize("job", ["conform", "load"])
def test_connection_refused_names_host_and_port(job: str, tmp_path: Path) -> None:
    port = _free_port()
    code, lines, elapsed = _eyechart(
        job, "--base-url", f"http://127.0.0.1:{port}/v1", "--report-dir", str(tmp_path), cwd=tmp_path
    )
    lines = [line for line in lines if not line.startswith("fixture server")]
    _assert_one_line(code, lines, elapsed, "cannot reach", f"127.0.0.1:{port}", "host and port")


def test_load_gives_a_bare_host_the_base_path(target: RunningTarget, tmp_path: Path) -> None:
    """``load --base-url http://host:port`` finds the API under the profile's base path, as conform does:
    the mistake it would otherwise make is a 404 on every request."""
    code, lines, _ = _eyechart(
        "load",
        "--base-url",
        target.root_url,
        "--api-key",
        "sk-wrong",
        "--report-dir",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert code == 2 and f"{target.root_url}/v1/openai/models answered HTTP 401" in "\n".join(lines)
