"""pytest plugin: run the conformance suite with ``pytest`` (``eyechart conform`` uses it too).

    pytest conformance --eyechart-base-url http://127.0.0.1:8000/v1/openai --eyechart-model my-model
    pytest conformance                       # starts the embedded target for the session
    pytest conformance --eyechart-only 'auth.*' --eyechart-profile vllm --eyechart-set max_images=2

Registered through the ``pytest11`` entry point, so it is loaded in every pytest run of an environment.
It plays well with the other plugins there: every option is prefixed (``--eyechart-*``), each can also
come from an ini key (``eyechart_*``) or an environment variable (``EYECHART_*``; command line first,
then environment, then ini), and a project that has no eyechart check sees nothing but the options in
``--help``: no fixture it uses, no collection change, no report. The fixtures ``api`` (the run's
:class:`~eyechart.conform.session.Session`) and ``profile`` come from here, so a user's own suite needs
no conftest. Once a check (a test marked by :func:`eyechart.conform.checks.check`) is collected, the
run's hooks (:mod:`eyechart.pytest_checks`) are registered: ids and severities resolved for the
profile, ``--eyechart-only``/``--eyechart-skip`` applied, outcomes turned into verdicts with evidence,
reports written with ``--eyechart-report-dir``. SHOULD and INFO findings do not fail the pytest run
(they show as xfailed with their reason) unless ``--eyechart-strict`` makes SHOULD findings fail.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from eyechart.conform.spec import MARK, CheckSpec
from eyechart.conform.state import STATE, ConformState, state_of
from eyechart.options import parse_headers
from eyechart.profiles import Profile, ProfileError, load_profile, parse_override
from eyechart.secrets import is_secret_name
from eyechart.severity import Severity

if TYPE_CHECKING:  # the session pulls in httpx and the image server: only once a suite uses it
    from eyechart.conform.session import Session

DEFAULT_PROFILE = "deepinfra"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_TIME = 300.0  # a whole run: past it, the report names what did not run (exit 4)


@dataclass(frozen=True)
class Setting:
    """One eyechart option: ``--eyechart-<name>``, ini ``eyechart_<name>``, env ``EYECHART_<NAME>``."""

    name: str
    help: str
    kind: str = "str"  # str | list | bool | float
    metavar: str | None = None
    ini: bool = True  # the API key is never read from a file in the repository

    @property
    def flag(self) -> str:
        return "--eyechart-" + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        return "eyechart_" + self.name

    @property
    def env(self) -> str:
        return "EYECHART_" + self.name.upper()


_TIMEOUT_HELP = f"bound of each request in seconds (default {DEFAULT_TIMEOUT:g})"
SETTINGS = (
    Setting("base_url", "the base URL as an OpenAI SDK takes it (else: the embedded target)", "str", "URL"),
    Setting("api_key", "bearer key for the target (better: env EYECHART_API_KEY)", "str", "KEY", ini=False),
    Setting("model", "model under test (else: the only model /models lists)", "str", "MODEL"),
    Setting("profile", f"conformance profile name or TOML path (default {DEFAULT_PROFILE})", "str", "NAME"),
    Setting("set", "override a profile knob, value as TOML (repeatable; env: ';'-separated)", "list", "K=V"),
    Setting("only", "run only check ids matching these globs (repeatable, comma-separated)", "list", "GLOB"),
    Setting("skip", "leave out check ids matching these globs (repeatable, comma-separated)", "list", "GLOB"),
    Setting("strict", "SHOULD findings fail the run too", "bool"),
    Setting("fixture_host", "bind address of the fixture image server (default 127.0.0.1)", "str", "HOST"),
    Setting("fixture_url", "the fixture server's base URL as the target reaches it", "str", "URL"),
    Setting(
        "header", "an extra request header, repeatable (env: ';'-separated)", "list", "NAME:VALUE", ini=False
    ),
    Setting("ca_bundle", "trust these CA certificates for an https target", "str", "FILE"),
    Setting("insecure", "do not verify the https target's certificate", "bool"),
    Setting("request_timeout", _TIMEOUT_HELP, "float", "SECONDS"),
    Setting(
        "max_time",
        f"end the run after this many seconds with a partial report (default {DEFAULT_MAX_TIME:g}; 0: none)",
        "float",
        "SECONDS",
    ),
    Setting("report_dir", "write conformance.json, junit.xml, index.html (and bodies/) here", "str", "DIR"),
)
_BY_NAME = {s.name: s for s in SETTINGS}


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("eyechart", "eyechart conformance checks (conformance/CONTRACT.md)")
    for s in SETTINGS:
        if s.kind == "bool":
            g.addoption(s.flag, dest=s.dest, action="store_true", default=None, help=f"{s.help} [{s.env}]")
        elif s.kind == "list":
            g.addoption(s.flag, dest=s.dest, action="append", metavar=s.metavar, help=f"{s.help} [{s.env}]")
        else:
            g.addoption(s.flag, dest=s.dest, metavar=s.metavar, help=f"{s.help} [{s.env}]")
        if s.ini:
            ini_type = {"bool": "bool", "list": "linelist"}.get(s.kind, "string")
            parser.addini(s.dest, f"eyechart: {s.help}", type=ini_type)  # type: ignore[arg-type]


def setting(config: pytest.Config, name: str) -> Any:
    """The value of eyechart option ``name``: command line, else ``EYECHART_*``, else ini, else None.

    Lists come back as lists of strings, ``strict`` as a bool, ``request_timeout`` as a float."""
    s = _BY_NAME[name]
    value: Any = config.getoption(s.dest)
    if value in (None, []) and os.environ.get(s.env):
        raw = os.environ[s.env]
        if s.kind == "list":
            value = raw.split(";")
        elif s.kind == "bool":
            value = raw.strip().lower() in ("1", "true", "yes", "on")
        else:
            value = raw
    if value in (None, []) and s.ini:
        ini = config.getini(s.dest)
        value = ini if ini not in ("", [], None) else None
    if s.kind == "list":
        return [v for v in value or [] if str(v).strip()]
    if s.kind == "bool":
        return bool(value)
    if s.kind == "float":
        try:
            return float(value) if value not in (None, "") else None
        except ValueError:
            raise pytest.UsageError(f"{s.flag}: {value!r} is not a number") from None
    return value or None


def headers_of(config: pytest.Config) -> dict[str, str]:
    """``--eyechart-header`` values as headers (a malformed one is a usage error)."""
    try:
        return parse_headers(setting(config, "header"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc).replace("--header", "--eyechart-header")) from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARK}(spec): an eyechart conformance check (use eyechart.conform.checks.check)"
    )
    config.stash[STATE] = ConformState()


def _patterns(values: list[str]) -> list[str]:
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def profile_for(config: pytest.Config) -> Profile:
    """The run's profile with its ``--eyechart-set`` overrides (a bad one is a usage error)."""
    st = state_of(config)
    if st.profile is None:
        try:
            overrides = dict(parse_override(t) for t in setting(config, "set"))
            st.profile = load_profile(setting(config, "profile") or DEFAULT_PROFILE, overrides)
        except ProfileError as exc:
            raise pytest.UsageError(str(exc)) from exc
    return st.profile


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    if not any(it.get_closest_marker(MARK) for it in items):
        return  # not a conformance suite: change nothing
    from eyechart import pytest_checks  # the run's hooks, imported only for a suite with checks

    if not config.pluginmanager.is_registered(pytest_checks):
        config.pluginmanager.register(pytest_checks, "eyechart-checks")
    st = state_of(config)
    st.active = True
    st.strict = setting(config, "strict")
    st.only, st.skip = _patterns(setting(config, "only")), _patterns(setting(config, "skip"))
    st.base_url, st.model = setting(config, "base_url") or "", setting(config, "model") or ""
    secret_headers = [v for k, v in headers_of(config).items() if is_secret_name(k)]  # api-key: a key too
    st.secrets = [k for k in [setting(config, "api_key"), *secret_headers] if k]
    profile = profile_for(config)
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    seen: dict[str, str] = {}
    for item in items:
        mark = item.get_closest_marker(MARK)
        if mark is None:
            keep.append(item)
            continue
        spec: CheckSpec = mark.args[0]
        callspec = getattr(item, "callspec", None)
        check_id = spec.resolve_id(
            dict(callspec.params) if callspec else {}, callspec.id if callspec else None
        )
        if check_id in seen:
            raise pytest.UsageError(
                f"check id {check_id!r} is used by both {seen[check_id]} and {item.nodeid}"
            )
        seen[check_id] = item.nodeid
        try:
            severity: Severity = spec.resolve_severity(profile)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from exc
        item.stash[pytest_checks.CHECK] = (check_id, severity, spec)
        st.catalogue.append((check_id, severity, spec.clause))
        selected = not st.only or any(fnmatch.fnmatchcase(check_id, p) for p in st.only)
        if selected and not any(fnmatch.fnmatchcase(check_id, p) for p in st.skip):
            keep.append(item)
            st.order.append(check_id)
        else:
            dropped.append(item)
    if dropped:
        st.deselected = len(dropped)
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    rd = setting(config, "report_dir")
    st.report_dir = Path(rd) if rd else None


@pytest.fixture(scope="session")
def api(pytestconfig: pytest.Config) -> Iterator[Session]:
    """The run's :class:`~eyechart.conform.session.Session`: the target, model and profile, and the
    methods checks use to talk to it (``chat``, ``stream``, ``models``, ``request``, ``vision_body``...).
    Starts the embedded target without ``--eyechart-base-url``; an unusable target or model ends the
    pytest run with exit code 2 and a one-line reason."""
    from eyechart import pytest_checks  # the conformance machinery, only for a suite that asks for it

    with pytest_checks.open_session(pytestconfig) as session:
        yield session


@pytest.fixture(scope="session")
def profile(pytestconfig: pytest.Config) -> Profile:
    """The run's :class:`~eyechart.profiles.Profile` (with its ``--eyechart-set`` overrides)."""
    return profile_for(pytestconfig)
