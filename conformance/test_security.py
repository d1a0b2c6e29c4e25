"""Security of image fetching (conformance/CONTRACT.md, ``security.*``).

Address probes point image URLs at loopback, link-local (cloud metadata), private and obfuscated
forms of 127.0.0.1, with the fixture server's canary as the path (and a listener of our own on
``[::1]``): a refusal is not enough, the canary must show no connection came. Nothing of ours can
listen on 169.254.169.254 or 10.0.0.1: there a 4xx is all that can be checked. Address probes are
skipped, with the contract's reason, when the fixture server itself sits on a loopback or private
address (local testing: the target must be allowed to fetch from such an address to get any URL image).
Address, redirect, drip, lying-length and streamed-size probes run only when the profile turns probes
on (``security_probes``: fetch policy, a deployment choice for self-hosted servers). The scheme and
decompression-bomb probes run in every profile: they need no reachable fixture and judge "a client
mistake is 4xx, never 5xx" (``errors.client_mistakes``), which no deployment choice excuses. Every
probe is bounded: the fixture server's slow routes stop by themselves, and the harness waits at most
``PROBE_TIMEOUT`` seconds.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from eyechart.conform.checks import check, expect, fail, skip
from eyechart.conform.session import Session, expect_refusal

CUT_OFF_S = 15.0  # "cut off within a few seconds": the whole request must end within this bound
SLOW_ROUTE_S = 40  # the fixture server's slow routes give up after this (longer than CUT_OFF_S)
PROBE_TIMEOUT = SLOW_ROUTE_S + 10.0
HUGE_BYTES = 64 * 1024 * 1024  # streamed without Content-Length: the size cap must stop the read

ADDRESS_FORMS = {
    "loopback": "127.0.0.1",
    "metadata": "169.254.169.254",
    "private_range": "10.0.0.1",
    "ipv6_loopback": "[::1]",
    "ipv4_mapped": "[::ffff:127.0.0.1]",
    "decimal": "2130706433",
    "octal": "0177.0.0.1",
}
SCHEMES = {
    "file": "file:///etc/passwd",
    "ftp": "ftp://{host}/img/png-rgb",
    "gopher": "gopher://{host}/_GET%20/img/png-rgb",
}


def _probes_on(api: Session) -> None:
    __tracebackhide__ = True
    if not api.profile.security_probes:
        skip(f"profile {api.profile.name} turns the security probes off (security.fetch: on for hosted APIs)")


def _fixture_address_private(api: Session) -> str | None:
    """Why address probes cannot be judged (the fixture server's own address is not public), else None."""
    host = urlsplit(api.fixtures.base_url).hostname or ""
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            return f"the fixture server's host {host!r} does not resolve here ({exc})"
        addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    for address in addresses:
        if not address.is_global:
            return (
                f"the fixture server sits on a non-public address ({address}): the target must be allowed to "
                "fetch from such addresses to get any URL image, so address-based probes cannot be judged "
                "(run with --fixture-host/--fixture-url on a public address to enable them)"
            )
    return None


def _address_probes_on(api: Session) -> None:
    __tracebackhide__ = True
    _probes_on(api)
    reason = _fixture_address_private(api)
    if reason:
        skip(reason)


def _send(api: Session, url: str, *, valid: bool = True, timeout: float | None = None) -> Any:
    body = api.vision_body([url], "Describe this image in one sentence.", max_tokens=8)
    return api.chat(body, valid=valid, timeout=timeout, allow_transport_error=timeout is not None)


def _refused(api: Session, ex: Any, what: str) -> None:
    __tracebackhide__ = True
    expect_refusal(ex, what, api.profile, if_200="was fetched and answered with 200")


class CanaryListener:
    """Counts TCP connections on an address the fixture server does not listen on (``::1``), so a target
    that connects there is caught rather than passing because the connection happened to be refused."""

    def __init__(self, host: str) -> None:
        self.hits = 0
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((host, 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="eyechart-canary", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.hits += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._sock.close()


@pytest.fixture(scope="module")
def ipv6_canary() -> Iterator[CanaryListener | None]:
    try:
        listener = CanaryListener("::1")
    except OSError:  # no IPv6 loopback here: the probe still demands a refusal
        yield None
        return
    yield listener
    listener.close()


def _no_canary(api: Session, token: str, ex: Any, what: str) -> None:
    __tracebackhide__ = True
    hits = api.fixtures.canary_hits(token)
    expect(
        hits == 0,
        f"{what}: the target connected to the canary",
        exchange=ex,
        expected="no connection",
        got=f"{hits} request(s) reached /canary/{token}",
    )


@pytest.mark.parametrize("form", list(ADDRESS_FORMS))
@check(
    "security.private_address.{form}",
    severity="MUST",
    clause="security.fetch",
)
def test_private_address(api: Session, form: str, ipv6_canary: CanaryListener | None) -> None:
    _address_probes_on(api)
    token = f"{form}-{uuid.uuid4().hex[:8]}"
    port = ipv6_canary.port if form == "ipv6_loopback" and ipv6_canary else api.fixtures.port
    url = f"http://{ADDRESS_FORMS[form]}:{port}/canary/{token}"
    before = ipv6_canary.hits if ipv6_canary else 0
    ex = _send(api, url, timeout=PROBE_TIMEOUT)
    _no_canary(api, token, ex, f"an image URL on {form} ({url})")
    if form == "ipv6_loopback" and ipv6_canary:
        expect(
            ipv6_canary.hits == before,
            f"an image URL on [::1] ({url}): the target connected",
            exchange=ex,
            expected="no connection",
            got=f"{ipv6_canary.hits - before} connection(s) to [::1]:{port}",
        )
    _refused(api, ex, f"an image URL on {form} ({url})")


@pytest.mark.parametrize("to", ["loopback", "metadata"])
@check("security.redirect_to_private.{to}", severity="MUST", clause="security.fetch")
def test_redirect_to_private(api: Session, to: str) -> None:
    _address_probes_on(api)
    token = f"redirect-{uuid.uuid4().hex[:8]}"
    url = api.fixtures.url(f"/redirect-private/{token}?to={to}")
    ex = _send(api, url, timeout=PROBE_TIMEOUT)
    _no_canary(api, token, ex, f"a public URL redirecting to {to}")
    _refused(api, ex, f"a public URL redirecting to {to}")


@pytest.mark.parametrize("scheme", list(SCHEMES))
@check("security.scheme.{scheme}", severity="MUST", clause="security.schemes")
def test_scheme(api: Session, scheme: str) -> None:
    host = urlsplit(api.fixtures.base_url).netloc
    url = SCHEMES[scheme].format(host=host)
    _refused(api, _send(api, url, valid=False, timeout=PROBE_TIMEOUT), f"a {scheme}:// image URL")


def _cut_off(api: Session, path: str, what: str) -> None:
    __tracebackhide__ = True
    _probes_on(api)
    started = time.monotonic()
    ex = _send(api, api.fixtures.url(path), timeout=PROBE_TIMEOUT)
    took = time.monotonic() - started
    expect(
        took <= CUT_OFF_S,
        f"{what}: the target waited {took:.1f} s instead of cutting it off",
        exchange=ex,
        expected=f"an answer within {CUT_OFF_S:g} s",
        got=f"{took:.1f} s, status {ex.status}",
    )
    _refused(api, ex, what)


@check(
    "security.slow_drip",
    severity="MUST",
    clause="security.slow_fetch",
)
def test_slow_drip(api: Session) -> None:
    _cut_off(api, f"/drip/png-rgb?bps=64&max_seconds={SLOW_ROUTE_S}", "an image URL that drips 64 bytes/s")


@pytest.mark.parametrize("mode", ["longer", "shorter"])
@check(
    "security.lying_length.{mode}",
    severity="MUST",
    clause="security.slow_fetch",
)
def test_lying_length(api: Session, mode: str) -> None:
    _cut_off(
        api,
        f"/lying-length/png-rgb?mode={mode}&max_seconds={SLOW_ROUTE_S}",
        f"an image URL whose Content-Length is {mode} than its body",
    )


@check(
    "security.size_cap_streaming",
    severity="MUST",
    clause="security.slow_fetch",
)
def test_size_cap_streaming(api: Session) -> None:
    _cut_off(
        api,
        f"/huge?max_bytes={HUGE_BYTES}&max_seconds={SLOW_ROUTE_S}",
        f"an image URL streaming {HUGE_BYTES >> 20} MiB without Content-Length",
    )


@check(
    "security.decompression_bomb",
    severity="MUST",
    clause="security.bomb",
)
def test_decompression_bomb(api: Session) -> None:
    ex = _send(api, api.data_uri("png-bomb"), timeout=PROBE_TIMEOUT)
    if ex.status is None:
        fail("the decompression bomb got no response", exchange=ex, expected="4xx", got=ex.error)
    _refused(api, ex, "a decompression bomb")
    after = api.chat(api.vision_body(["colour-red"], max_tokens=8))
    expect(
        after.status == 200,
        "after the decompression bomb the server no longer answers a plain request",
        exchange=after,
        expected=200,
        got=after.status,
    )
