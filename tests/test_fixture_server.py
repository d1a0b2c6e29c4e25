"""The fixture HTTP server over real HTTP on 127.0.0.1: honest routes and bounded hostile ones."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from eyechart.images import fixtures
from eyechart.images.server import FixtureServer, FixtureServerError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-cache")


@pytest.fixture(scope="module")
def server(cache: Path) -> Iterator[FixtureServer]:
    with FixtureServer(cache=cache) as srv:
        yield srv


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(5.0), trust_env=False) as c:
        yield c


@pytest.mark.parametrize("name", ["png-rgb", "jpeg-rgb", "webp-lossy", "gif", "doc-invoice"])
def test_img_serves_fixture_bytes_with_true_content_type(
    name: str, server: FixtureServer, client: httpx.Client, cache: Path
) -> None:
    fx = fixtures.get(name, cache)
    r = client.get(server.url(f"/img/{name}"))
    assert r.status_code == 200
    assert r.headers["content-type"] == fx.media_type
    assert r.content == fx.data()
    assert server.hits(f"/img/{name}") >= 1


def test_img_can_be_mislabelled(server: FixtureServer, client: httpx.Client) -> None:
    r = client.get(server.url("/img/png-rgb"), params={"content_type": "image/jpeg"})
    assert r.headers["content-type"] == "image/jpeg"
    assert fixtures.sniff_format(r.content) == "png"


def test_head_gives_headers_without_body(server: FixtureServer, client: httpx.Client, cache: Path) -> None:
    r = client.head(server.url("/img/colour-red"))
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["content-length"]) == fixtures.get("colour-red", cache).size


@pytest.mark.parametrize("path", ["/404", "/img/no-such-fixture", "/nothing/here"])
def test_missing_things_are_404(path: str, server: FixtureServer, client: httpx.Client) -> None:
    assert client.get(server.url(path)).status_code == 404


def test_html_served_as_png(server: FixtureServer, client: httpx.Client) -> None:
    r = client.get(server.url("/html-as-png"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert fixtures.sniff_format(r.content) == "html"


def test_drip_is_slow_but_complete(server: FixtureServer, client: httpx.Client, cache: Path) -> None:
    fx = fixtures.get("size-1x1", cache)  # 69 bytes
    start = time.monotonic()
    r = client.get(server.url("/drip/size-1x1"), params={"bps": 100})
    took = time.monotonic() - start
    assert r.content == fx.data()
    assert 0.5 < took < 3.0  # ~0.7 s at 100 bytes/s


def test_drip_stops_at_max_seconds(server: FixtureServer, client: httpx.Client) -> None:
    start = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):  # body shorter than Content-Length: cut off
        client.get(server.url("/drip/doc-invoice"), params={"bps": 1000, "max_seconds": 1})
    assert time.monotonic() - start < 3.0


def test_lying_length_longer_never_completes(server: FixtureServer) -> None:
    got = bytearray()
    start = time.monotonic()
    with httpx.Client(timeout=httpx.Timeout(5.0, read=1.0), trust_env=False) as c:  # noqa: SIM117
        with pytest.raises(httpx.ReadTimeout):
            with c.stream("GET", server.url("/lying-length/png-rgb"), params={"max_seconds": 10}) as r:
                declared = int(r.headers["content-length"])
                for chunk in r.iter_raw():
                    got += chunk
    assert time.monotonic() - start < 3.0
    assert 0 < len(got) < declared


def test_lying_length_shorter_declares_less_than_it_sends(
    server: FixtureServer, client: httpx.Client, cache: Path
) -> None:
    fx = fixtures.get("png-rgb", cache)
    r = client.get(server.url("/lying-length/png-rgb"), params={"mode": "shorter"})
    assert int(r.headers["content-length"]) == fx.size // 2
    assert r.content == fx.data()[: fx.size // 2]


def test_redirect_chain_has_the_asked_length(server: FixtureServer, client: httpx.Client) -> None:
    r = client.get(server.url("/redirect/4/colour-blue"), follow_redirects=True)
    assert r.status_code == 200 and len(r.history) == 4
    assert all(h.status_code == 302 for h in r.history)
    assert str(r.url) == server.url("/img/colour-blue")
    with (
        httpx.Client(timeout=5.0, max_redirects=2, trust_env=False) as c,
        pytest.raises(httpx.TooManyRedirects),
    ):
        c.get(server.url("/redirect/4/colour-blue"), follow_redirects=True)


def test_redirect_private_points_at_the_canary(server: FixtureServer, client: httpx.Client) -> None:
    token = "tok-redirect"
    r = client.get(server.url(f"/redirect-private/{token}"))
    assert r.status_code == 302
    assert r.headers["location"] == f"http://127.0.0.1:{server.port}/canary/{token}"
    assert server.canary_hits(token) == 0  # not followed: the canary stays silent
    followed = client.get(server.url(f"/redirect-private/{token}"), follow_redirects=True)
    assert followed.status_code == 200 and server.canary_hits(token) == 1
    meta = client.get(server.url(f"/redirect-private/{token}"), params={"to": "metadata"})
    assert meta.headers["location"].startswith("http://169.254.169.254/")


def test_canary_counts_hits_per_token(server: FixtureServer, client: httpx.Client) -> None:
    for _ in range(3):
        r = client.get(server.url("/canary/tok-a"))
        assert r.status_code == 200 and fixtures.sniff_format(r.content) == "png"
    assert server.canary_hits("tok-a") == 3
    assert server.canary_hits("tok-never") == 0


def test_exact_route_serves_exact_sizes(server: FixtureServer, client: httpx.Client) -> None:
    for leaf, fmt in (("2500.png", "PNG"), ("3000.jpg", "JPEG")):
        r = client.get(server.url(f"/exact/{leaf}"))
        assert r.status_code == 200 and len(r.content) == int(leaf.split(".")[0])
        with Image.open(io.BytesIO(r.content)) as img:
            img.load()
            assert img.format == fmt
    assert client.get(server.url("/exact/abc.png")).status_code == 400
    assert client.get(server.url(f"/exact/{10**9}.png")).status_code == 400


def test_huge_streams_without_length_up_to_its_cap(server: FixtureServer, client: httpx.Client) -> None:
    total = 0
    with client.stream("GET", server.url("/huge"), params={"max_bytes": 2_000_000}) as r:
        assert "content-length" not in r.headers
        for chunk in r.iter_raw():
            total += len(chunk)
    assert 2_000_000 <= total < 2_001_000


def test_bad_parameters_are_400(server: FixtureServer, client: httpx.Client) -> None:
    assert client.get(server.url("/drip/png-rgb"), params={"bps": "0"}).status_code == 400
    assert client.get(server.url("/drip/png-rgb"), params={"max_seconds": "9999"}).status_code == 400
    assert client.get(server.url("/redirect-private/x"), params={"to": "moon"}).status_code == 400


def test_public_url_shapes_urls_and_redirects(cache: Path) -> None:
    srv = FixtureServer(public_url="http://fixtures.example:8900/")
    assert srv.url("/img/png-rgb") == "http://fixtures.example:8900/img/png-rgb"
    with FixtureServer(cache=cache) as probe:
        port = probe.port
    with FixtureServer(port=port, public_url="http://fixtures.example:8900", cache=cache) as s2:
        with httpx.Client(timeout=5.0, trust_env=False) as c:
            r = c.get(f"http://127.0.0.1:{s2.port}/redirect/1/png-rgb")
        assert r.headers["location"] == "http://fixtures.example:8900/img/png-rgb"


def test_public_url_port_is_the_listening_port(cache: Path) -> None:
    """--fixture-url http://host:PORT: the target calls back on PORT, so the server listens there."""
    with FixtureServer(cache=cache) as probe:
        free = probe.port
    with FixtureServer(public_url=f"http://fixtures.example:{free}", cache=cache) as srv:
        assert srv.port == free
        with httpx.Client(timeout=5.0, trust_env=False) as c:
            assert c.get(f"http://127.0.0.1:{free}/img/png-rgb").status_code == 200
    assert FixtureServer(public_url="http://fixtures.example/").port == 0  # no port named: any free one


def test_port_in_use_is_a_clear_error(server: FixtureServer) -> None:
    with pytest.raises(FixtureServerError, match="cannot serve fixtures"):
        FixtureServer(port=server.port).start()


def test_stop_is_prompt_even_with_a_slow_client_attached(cache: Path) -> None:
    import threading

    srv = FixtureServer(cache=cache).start()
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            with httpx.Client(timeout=10.0, trust_env=False) as c:
                c.get(srv.url("/drip/doc-invoice"), params={"bps": 10})
        except httpx.HTTPError as exc:
            errors.append(exc)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    start = time.monotonic()
    srv.stop()
    assert time.monotonic() - start < 3.0
    t.join(5.0)
    assert not t.is_alive() and errors  # the drip was cut, not completed
    with pytest.raises(httpx.ConnectError), httpx.Client(timeout=2.0, trust_env=False) as c:
        c.get(srv.url("/health"))
