"""Habits of a published package: one exit-code table everywhere, one version, typed, licensed,
run folders that never collide."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from eyechart import __version__, bundled
from eyechart.exitcodes import ExitCode, exit_codes_markdown
from eyechart.runs import new_run_dir

ROOT = Path(__file__).resolve().parent.parent


def _help(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "eyechart", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_readme_holds_the_exit_code_table_the_help_prints() -> None:
    assert exit_codes_markdown() in (ROOT / "README.md").read_text()
    for command in ("conform", "load"):
        text = _help(command)
        assert all(f"  {int(c)}  {c.meaning}" in text for c in ExitCode), command


def test_service_commands_list_only_the_exit_codes_they_can_end_with() -> None:
    for command in ("serve", "fixtures"):
        text = _help(command).split("exit codes:", 1)[1]
        assert ExitCode.USAGE.meaning in text and ExitCode.OK.meaning in text
        assert ExitCode.REGRESSION.meaning not in text and ExitCode.FAILED.meaning not in text


def test_one_version_source_typed_and_licensed() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and "\nversion =" not in pyproject
    out = subprocess.run(
        [sys.executable, "-m", "eyechart", "--version"], capture_output=True, text=True, timeout=60
    ).stdout
    assert out.strip() == f"eyechart {__version__}"
    assert (Path(bundled.__file__).parent / "py.typed").is_file()
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]


def test_run_folders_end_with_the_job_and_never_collide(tmp_path: Path) -> None:
    first = new_run_dir(tmp_path, "conform")
    second = new_run_dir(tmp_path, "conform")
    assert first != second and first.is_dir() and second.is_dir()
    assert first.name.endswith("-conform") and second.name.endswith("-conform")
    assert not new_run_dir(tmp_path / "later", "load", create=False).exists()
