"""The state of one conformance run inside pytest, kept in the config's stash.

The plugin fills it while pytest collects and runs the checks; ``eyechart conform`` reads it back after
``pytest.main`` returns. Cheap to import (the plugin is loaded in every pytest run of an environment).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from eyechart.conform.results import CheckResult
from eyechart.profiles import Profile
from eyechart.severity import Severity

if TYPE_CHECKING:  # the session pulls in httpx and the image server: only once checks really run
    from eyechart.conform.session import Session


@dataclass
class ConformState:
    """Everything the plugin knows about the current conformance run."""

    active: bool = False
    profile: Profile | None = None
    session: Session | None = None
    results: dict[str, CheckResult] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    catalogue: list[tuple[str, Severity, str]] = field(default_factory=list)  # (id, severity, clause)
    started: float = field(default_factory=time.time)
    finished: float | None = None
    strict: bool = False
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    report_dir: Path | None = None
    written: dict[str, Path] = field(default_factory=dict)
    deselected: int = 0
    abort_reason: str | None = None  # why the run stopped before the checks (usage, unreachable target)
    base_url: str = ""  # as given (the session's, once open, wins)
    model: str = ""
    secrets: list[str] = field(default_factory=list)


STATE = pytest.StashKey[ConformState]()


def state_of(config: pytest.Config) -> ConformState:
    """The run's state (created by the plugin's ``pytest_configure``)."""
    return config.stash[STATE]
