"""Where the suite, schemas, profiles, workloads and fixtures live.

In a source checkout they are the top-level folders; in an installed wheel they travel inside the
package under ``eyechart/_bundled`` (see pyproject's force-include). Every other module asks here.
"""

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@cache
def root() -> Path:
    """The folder holding ``conformance/``, ``loadtests/`` and ``fixtures/``."""
    checkout = _PACKAGE.parent.parent
    if (checkout / "conformance" / "schemas").is_dir() and (checkout / "pyproject.toml").is_file():
        return checkout
    return _PACKAGE / "_bundled"


def conformance_dir() -> Path:
    return root() / "conformance"


def schemas_dir() -> Path:
    return conformance_dir() / "schemas"


def profiles_dir() -> Path:
    return conformance_dir() / "profiles"


def loadtests_dir() -> Path:
    return root() / "loadtests"


def workloads_dir() -> Path:
    return loadtests_dir() / "workloads"


def fixtures_dir() -> Path:
    return root() / "fixtures"
