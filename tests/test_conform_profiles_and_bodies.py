"""Profiles are validated by their JSON Schema, and reproducers of big bodies survive the report folder
being moved (issue 10, item 7)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
from rich.console import Console

from eyechart import bundled
from eyechart.conform.runner import ConformOptions, run_conformance
from eyechart.conform.session import Session
from eyechart.profiles import ProfileError, available, load_profile, schema_path
from eyechart.target.launch import RunningTarget


def test_every_bundled_profile_is_valid_against_the_profile_schema() -> None:
    import tomllib

    schema = json.loads(schema_path().read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema_path().parent == bundled.schemas_dir()
    for name in available():
        data = tomllib.loads((bundled.profiles_dir() / f"{name}.toml").read_text())
        jsonschema.validate(data, schema)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('usage_required = "no"', 'usage_required = "no" is not allowed; usage_required takes true or false'),
        ('formats = ["png", "jpg"]', 'formats takes a list of "jpeg", "png"'),
        ('models_endpoint = "MAY"', 'models_endpoint takes one of "MUST", "SHOULD", "INFO"'),
        ("max_images = 0", "max_images takes an integer ≥ 1"),
        ("usage_requried = true", "unknown profile knob 'usage_requried'; known: "),
    ],
)
def test_a_bad_profile_file_names_the_file_the_knob_and_the_allowed_values(
    line: str, says: str, tmp_path: Path
) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(f'description = "mine"\n{line}\n')
    with pytest.raises(ProfileError) as err:
        load_profile(str(path))
    assert str(err.value).startswith(f"{path}: ") and says in str(err.value), str(err.value)


def test_a_bad_set_is_named_as_set_and_the_cli_exits_2(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"^--set: profile knob usage_required = \"no\""):
        load_profile("vllm", {"usage_required": "no"})
    console = io.StringIO()
    opts = ConformOptions(overrides=["usage_required=no"], report_dir=tmp_path, progress=False)
    outcome = run_conformance(opts, Console(file=console, width=200))
    assert int(outcome.code) == 2 and "usage_required takes true or false" in console.getvalue()


def test_a_big_bodys_reproducer_works_after_the_report_folder_moves(
    target: RunningTarget, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    api = Session(
        base_url=target.base_url, api_key=target.api_key, model=target.model,
        profile=load_profile("deepinfra"), body_dir=run / "bodies",
    )  # fmt: skip
    try:
        api.begin_check("limits.demo")
        padding = "apple " * 60_000  # well over the 256 KiB a reproducer inlines
        ex = api.chat(api.text_body(f"Say hi. {padding}", max_tokens=1))
        assert ex.status == 200
        (saved,) = api.save_bodies("limits.demo", ex)
    finally:
        api.close()
    assert saved.is_file() and "--data-binary @bodies/" in ex.curl and str(run) not in ex.curl
    moved = tmp_path / "elsewhere" / "artifact"
    shutil.move(str(run), str(moved))
    pasted = ex.curl.replace("curl -sS", "curl -sS -o /dev/null -w '%{http_code}' --max-time 30", 1)
    proc = subprocess.run(
        ["bash", "-c", pasted],
        cwd=moved, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "EYECHART_API_KEY": target.api_key},
    )  # fmt: skip
    assert proc.stdout.strip().endswith("200"), proc.stdout[-300:] + proc.stderr[-300:]


def _workload_schema() -> dict[str, object]:
    schema: dict[str, object] = json.loads((bundled.schemas_dir() / "workload.json").read_text())
    return schema


def test_every_bundled_workload_is_valid_against_the_workload_schema() -> None:
    import tomllib

    schema = _workload_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    for path in sorted(bundled.workloads_dir().glob("*.toml")):
        jsonschema.validate(tomllib.loads(path.read_text()), schema)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('stream = "yes"', "stream"),
        ('transport = "ftp"', "transport"),
        ("variants = 0", "variants"),
        ('[[prompts]]\nkind = "poem"\ntext = "x"', "prompts[1].kind"),
        ("bogus = 1", "bogus"),
    ],
)
def test_the_workload_schema_and_loader_refuse_the_same_mistakes(
    extra: str, key: str, tmp_path: Path
) -> None:
    """The schema documents the format; the loader's message names the file, the key and what it takes."""
    import tomllib

    from eyechart.load.workloads import WorkloadError, load_workload

    path = tmp_path / "mine.toml"
    first, last = ("", extra) if "[[" in extra else (extra, "")
    path.write_text(
        f'{first}\nimages_per_request = 0\n[[prompts]]\nkind = "text"\ntext = "Say hi."\n{last}\n'
    )
    errors = list(
        jsonschema.Draft202012Validator(_workload_schema()).iter_errors(tomllib.loads(path.read_text()))
    )
    assert errors, "the schema accepted a bad workload"
    with pytest.raises(WorkloadError) as err:
        load_workload(str(path))
    assert str(err.value).startswith(f"{path}: key '{key}'"), str(err.value)
