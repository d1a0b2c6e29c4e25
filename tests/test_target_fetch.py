"""Image URL fetching of the reference target, against real HTTP servers on loopback addresses.

Each test server counts the requests it got, so a refused address is proven never contacted.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from eyechart.target.decode import ImageRejected
from eyechart.target.fetch import Fetcher, classify_address, literal_ip


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 32), "blue").save(buf, "PNG")
    return buf.getvalue()


PNG = _png()
BIG = 2_000_000  # bytes sent by the oversize routes; tests use a smaller max_bytes to stay fast


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str = "image/png", length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        path = self.path
        try:
            if path == "/ok.png":
                self._send(200, PNG)
            elif path == "/missing.png":
                self._send(404, b"not here", "text/plain")
            elif path == "/error.png":
                self._send(503, b"down", "text/plain")
            elif path == "/page.png":
                self._send(200, b"<!DOCTYPE html><html><body>Sign in</body></html>", "image/png")
            elif path == "/host":
                self._send(200, PNG, "image/png") if self.headers.get("Host") else self._send(400, b"")
                self.server.host_headers.append(self.headers.get("Host", ""))
            elif path == "/slow.png":  # a valid start, then one byte every 50 ms, for at most 6 s
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PNG)))
                self.end_headers()
                self.wfile.write(PNG[:8])
                deadline = time.monotonic() + 6
                for byte in PNG[8:]:
                    if time.monotonic() > deadline:
                        break
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.05)
            elif path == "/short-length.png":  # says 100 bytes, sends the whole PNG
                self._send(200, PNG, length=100)
            elif path == "/long-length.png":  # says more than it sends, then closes
                self._send(200, PNG, length=len(PNG) + 1000)
            elif path == "/big-declared.png":
                self._send(200, PNG + b"\x00" * (BIG - len(PNG)))
            elif path == "/big-undeclared.png":  # no Content-Length: only counting can stop it
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(PNG)
                for _ in range(BIG // 65536):
                    self.wfile.write(b"\x00" * 65536)
            elif path.startswith("/redirect/"):  # /redirect/N → /redirect/N-1 → ... → /ok.png
                n = int(path.rsplit("/", 1)[1])
                self.send_response(302)
                self.send_header("Location", "/ok.png" if n <= 1 else f"/redirect/{n - 1}")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif path == "/redirect-away":
                self.send_response(307)
                self.send_header("Location", self.server.redirect_target)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._send(404, b"", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the fetcher hung up on purpose (cap or timeout)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hits: list[str]
    host_headers: list[str]
    redirect_target: str = ""


@pytest.fixture
def serve() -> Iterator:  # type: ignore[type-arg]
    started: list[tuple[_Server, threading.Thread]] = []

    def start(host: str = "127.0.0.1") -> _Server:
        server = _Server((host, 0), _Handler)
        server.hits, server.host_headers = [], []
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def url(server: _Server, path: str) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}{path}"


def load(url_: str, **kw: object) -> object:
    async def go() -> object:
        fetcher = Fetcher(**kw)  # type: ignore[arg-type]
        try:
            return await fetcher.load(url_)
        finally:
            await fetcher.aclose()

    return asyncio.run(go())


def refused(url_: str, **kw: object) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        load(url_, **kw)
    err = info.value
    assert 400 <= err.status < 500
    assert "Traceback" not in err.message and ".py" not in err.message
    return err


def test_fetches_a_png_over_http(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve()
    image = load(url(server, "/ok.png"), allow_private=True)
    assert (image.format, image.width, image.height, image.data) == ("png", 48, 32, PNG)  # type: ignore[attr-defined]


def test_data_uris_go_through_the_same_entry_point() -> None:
    import base64

    image = load("data:image/png;base64," + base64.b64encode(PNG).decode())
    assert image.data == PNG  # type: ignore[attr-defined]


def test_host_header_keeps_the_name_while_connecting_to_the_checked_address(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve()
    port = server.server_address[1]
    load(f"http://localhost:{port}/host", allow_private=True)
    assert server.host_headers == [f"localhost:{port}"]


@pytest.mark.parametrize(("path", "needle"), [("/missing.png", "404"), ("/error.png", "503")])
def test_non_2xx_is_400_naming_the_status(serve, path: str, needle: str) -> None:  # type: ignore[no-untyped-def]
    err = refused(url(serve(), path), allow_private=True)
    assert err.status == 400 and needle in err.message


def test_html_labelled_image_png_is_refused_by_its_bytes(serve) -> None:  # type: ignore[no-untyped-def]
    err = refused(url(serve(), "/page.png"), allow_private=True)
    assert err.status == 400 and err.code == "unsupported_image_format" and "HTML" in err.message


def test_slow_drip_is_cut_off_by_the_total_timeout(serve) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    err = refused(url(serve(), "/slow.png"), allow_private=True, total_timeout=1.0, read_timeout=5.0)
    elapsed = time.monotonic() - started
    assert err.status == 400 and "1 s" in err.message
    assert elapsed < 3.0


@pytest.mark.parametrize("path", ["/short-length.png", "/long-length.png"])
def test_lying_content_length_is_a_400_not_a_crash(serve, path: str) -> None:  # type: ignore[no-untyped-def]
    assert refused(url(serve(), path), allow_private=True).status == 400


@pytest.mark.parametrize("path", ["/big-declared.png", "/big-undeclared.png"])
def test_size_cap_holds_while_streaming(serve, path: str) -> None:  # type: ignore[no-untyped-def]
    err = refused(url(serve(), path), allow_private=True, max_bytes=500_000)
    assert err.status == 413 and err.code == "image_too_large"


def test_size_cap_boundary_over_http(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve()
    assert load(url(server, "/ok.png"), allow_private=True, max_bytes=len(PNG)).data == PNG  # type: ignore[attr-defined]
    assert refused(url(server, "/ok.png"), allow_private=True, max_bytes=len(PNG) - 1).status == 413


def test_redirects_followed_up_to_the_limit(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve()
    assert load(url(server, "/redirect/3"), allow_private=True, max_redirects=3).width == 48  # type: ignore[attr-defined]
    server.hits.clear()
    err = refused(url(server, "/redirect/4"), allow_private=True, max_redirects=3)
    assert "redirected more than 3" in err.message
    assert "/ok.png" not in server.hits


def test_redirect_to_loopback_is_refused_and_never_contacted(serve) -> None:  # type: ignore[no-untyped-def]
    canary = serve("127.0.0.1")
    origin = serve("127.0.0.2")  # an address this fetcher is explicitly allowed to use
    origin.redirect_target = url(canary, "/ok.png")
    err = refused(url(origin, "/redirect-away"), allow_private=False, allow_networks=("127.0.0.2/32",))
    assert err.code == "image_url_forbidden" and "127.0.0.1" in err.message
    assert origin.hits == ["/redirect-away"]
    assert canary.hits == []


def test_redirect_to_file_scheme_is_refused(serve) -> None:  # type: ignore[no-untyped-def]
    origin = serve()
    origin.redirect_target = "file:///etc/passwd"
    err = refused(url(origin, "/redirect-away"), allow_private=True)
    assert err.status == 400 and "file" in err.message


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "2130706433",  # decimal 127.0.0.1
        "0177.0.0.1",  # octal
        "0x7f.0.0.1",  # hex
        "0x7f000001",
        "127.1",  # short form
        "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
        "[::ffff:7f00:1]",
    ],
)
def test_loopback_in_any_spelling_is_refused_without_connecting(serve, host: str) -> None:  # type: ignore[no-untyped-def]
    canary = serve("127.0.0.1")
    port = canary.server_address[1]
    err = refused(f"http://{host}:{port}/ok.png")
    assert err.status == 400 and err.code == "image_url_forbidden"
    assert "127.0.0.1" in err.message or "::1" in err.message
    assert canary.hits == []


@pytest.mark.parametrize(
    "target",
    [
        "http://[::1]/x.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x.png",
        "http://172.16.5.4/x.png",
        "http://192.168.1.1/x.png",
        "http://100.64.0.1/x.png",  # carrier-grade NAT
        "http://0.0.0.0/x.png",
        "http://224.0.0.1/x.png",
        "http://240.0.0.1/x.png",
        "http://[fe80::1]/x.png",
        "http://[fc00::1]/x.png",
        "http://[2002:7f00:1::]/x.png",  # 6to4 wrapping 127.0.0.1
        "https://192.168.0.1:8443/x.png",
    ],
)
def test_non_public_addresses_refused_before_any_connection(target: str) -> None:
    # check_url never connects, so even a broken guard sends no packet to these ranges.
    async def go() -> None:
        fetcher = Fetcher(connect_timeout=0.5, total_timeout=2.0)
        try:
            await fetcher.check_url(target)
        finally:
            await fetcher.aclose()

    with pytest.raises(ImageRejected) as info:
        asyncio.run(go())
    assert info.value.status == 400 and info.value.code == "image_url_forbidden"


def test_check_url_passes_public_addresses() -> None:
    async def go() -> None:
        fetcher = Fetcher()
        try:
            await fetcher.check_url("https://93.184.216.34/x.png")  # checked, not contacted
        finally:
            await fetcher.aclose()

    asyncio.run(go())


@pytest.mark.parametrize(
    "target",
    ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://example.com/", "javascript:alert(1)"],
)
def test_other_schemes_are_400(target: str) -> None:
    err = refused(target)
    assert err.status == 400 and err.code == "invalid_image_url" and "scheme" in err.message


@pytest.mark.parametrize("target", ["http:///x.png", "http://", "http://[::1/x.png", "http://host:99999/"])
def test_malformed_urls_are_400(target: str) -> None:
    assert refused(target).status == 400


def test_connection_refused_is_400(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve()
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    err = refused(f"http://127.0.0.1:{port}/ok.png", allow_private=True)
    assert err.status == 400 and "connect" in err.message


def test_address_classification() -> None:
    ip = ipaddress.ip_address
    assert classify_address(ip("93.184.216.34")) is None
    assert classify_address(ip("2606:4700::1111")) is None
    assert classify_address(ip("127.0.0.1")) == "a loopback"
    assert classify_address(ip("169.254.169.254")) == "a link-local"
    assert classify_address(ip("::ffff:10.1.2.3")) is not None
    assert literal_ip("2130706433") == ip("127.0.0.1")
    assert literal_ip("0177.0.0.1") == ip("127.0.0.1")
    assert literal_ip("example.com") is None
    assert literal_ip("deadbeef.cafe") is None  # hex-looking names are names
