"""Fixtures of the conformance suite. The eyechart pytest plugin does the rest (options, ids, reports).

``api`` is the :class:`eyechart.conform.session.Session` of the run: the target's base URL, model,
profile, and the methods cases use to talk to it (``chat``, ``stream``, ``models``, ``request``,
``vision_body``...). ``profile`` is its :class:`eyechart.profiles.Profile`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eyechart.conform.session import Session
from eyechart.profiles import Profile
from eyechart.pytest_plugin import open_session


@pytest.fixture(scope="session")
def api(pytestconfig: pytest.Config) -> Iterator[Session]:
    with open_session(pytestconfig) as session:
        yield session


@pytest.fixture(scope="session")
def profile(api: Session) -> Profile:
    return api.profile
