"""Images the harness sends: generated fixtures (``fixtures``) and the hostile fixture HTTP server
(``server``). Other modules import from here::

    from eyechart.images import get, names, data_uri, exact_size_image, synthetic, FixtureServer
"""

from eyechart.images.fixtures import (
    KINDS,
    MUST_MODES,
    SHOULD_MODES,
    Fixture,
    UnknownFixtureError,
    cache_dir,
    data_uri,
    exact_size_bytes,
    exact_size_image,
    get,
    names,
    synthetic,
)
from eyechart.images.formats import sniff_format
from eyechart.images.server import FixtureServer, FixtureServerError

__all__ = [
    "KINDS",
    "MUST_MODES",
    "SHOULD_MODES",
    "Fixture",
    "FixtureServer",
    "FixtureServerError",
    "UnknownFixtureError",
    "cache_dir",
    "data_uri",
    "exact_size_bytes",
    "exact_size_image",
    "get",
    "names",
    "sniff_format",
    "synthetic",
]
