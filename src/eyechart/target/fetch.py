"""Load an image named by a request: a ``data:`` URI, or an ``http(s)://`` URL fetched safely.

Image URLs come from clients, so fetching them is a server-side request forgery risk (CONTRACT §7).
Every failure is an :class:`ImageRejected` with a 4xx (never a 5xx: clients retry those):

- only ``http`` and ``https``; ``file:``, ``ftp:``, ``gopher:`` ... → 400 ``invalid_image_url``.
- The host is normalised first: decimal, octal and hex IPv4 forms (``2130706433``, ``0177.0.0.1``,
  ``0x7f.1``) are read the way ``inet_aton`` reads them, so they cannot slip past as "names".
- The name is resolved and EVERY address checked; loopback, private, link-local (cloud metadata at
  169.254.169.254), unspecified, multicast, reserved, shared and other non-global ranges, and IPv6
  forms that embed such an IPv4 address (``::ffff:127.0.0.1``, 6to4, Teredo) → 400
  ``image_url_forbidden``, unless ``allow_private`` (local fixture servers) or the address is in
  ``allow_networks``.
- DNS rebinding: the request goes to the very address that was checked (the URL's host is replaced
  by the IP; the ``Host`` header and, for https, the TLS server name and certificate check keep the
  original name), so a second, different DNS answer is never used.
- Redirects are not followed by httpx; we follow at most ``max_redirects`` ourselves, and every hop
  goes through the same scheme and address checks.
- Timeouts: ``connect_timeout`` and ``read_timeout`` per operation, and ``total_timeout`` for the
  whole load (DNS, every hop, the body), which cuts off a server that drips bytes slowly.
- The size cap is enforced while streaming: a Content-Length over the cap is refused before reading,
  and the read stops as soon as the bytes received pass the cap, whatever the headers said → 413.
- A non-2xx answer → 400 naming the status. The body's format is judged from its bytes (magic-byte
  sniffing in :mod:`.decode`), never from Content-Type: an HTML page labelled ``image/png`` → 400.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

import httpx

from eyechart.target.decode import (
    MAX_IMAGE_BYTES,
    DecodedImage,
    ImageRejected,
    decode_bytes,
    decode_data_uri,
    too_large,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_REDIRECTS = {301, 302, 303, 307, 308}
_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+")
_USER_AGENT = "eyechart-serve/0.1 (image fetch)"


class Fetcher:
    """Turns image URLs into :class:`DecodedImage`; one per server, shared by all requests."""

    def __init__(
        self,
        allow_private: bool = False,
        connect_timeout: float = 3.0,
        read_timeout: float = 5.0,
        total_timeout: float = 10.0,
        max_bytes: int = MAX_IMAGE_BYTES,
        max_redirects: int = 3,
        allow_networks: tuple[str, ...] = (),
    ) -> None:
        self.allow_private = allow_private
        self.total_timeout = total_timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.allow_networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in allow_networks
        )
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,  # an HTTP(S)_PROXY would connect somewhere we did not check
            timeout=httpx.Timeout(
                connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
            ),
            headers={
                "User-Agent": _USER_AGENT,
                "Accept": "image/jpeg, image/png, image/webp, */*;q=0.1",
                # Compressed bodies would inflate past the byte cap we count; ask for the raw bytes.
                "Accept-Encoding": "identity",
            },
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def load(self, url: str) -> DecodedImage:
        """Decode a data URI or fetch an http(s) URL; raise ImageRejected (4xx) on any failure."""
        if url[:5].lower() == "data:":
            return await asyncio.to_thread(decode_data_uri, url)
        data = await self.fetch_bytes(url)
        return await asyncio.to_thread(decode_bytes, data)

    async def check_url(self, url: str) -> None:
        """Apply the scheme and address checks to ``url`` without connecting (raises ImageRejected)."""
        async with asyncio.timeout(self.total_timeout):
            await self._checked_target(url)

    async def fetch_bytes(self, url: str) -> bytes:
        """The body of ``url`` after the checks in the module docstring (no decoding)."""
        try:
            async with asyncio.timeout(self.total_timeout):
                return await self._follow(url)
        except TimeoutError:
            raise _rejected(
                f"fetching the image URL took longer than {self.total_timeout:g} s", "image_fetch_failed"
            ) from None

    async def _follow(self, url: str) -> bytes:
        for hop in range(self.max_redirects + 1):
            target = await self._checked_target(url)
            result = await self._get(target)
            if isinstance(result, bytes):
                return result
            if hop == self.max_redirects:
                break
            url = result
        raise _rejected(
            f"the image URL redirected more than {self.max_redirects} times", "image_fetch_failed"
        )

    async def _checked_target(self, url: str) -> _Target:
        parts = _split(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        literal = literal_ip(host)
        if literal is not None:
            addresses = [literal]
        else:
            addresses = await _resolve(host, port)
        for address in addresses:
            reason = self.refusal(address)
            if reason:
                shown = host if literal is None or str(literal) == host else f"{host} (= {literal})"
                raise _rejected(
                    f"image URL host {shown} resolves to {reason} address {address}; refused",
                    "image_url_forbidden",
                )
        return _Target(url=url, parts=parts, host=host, port=port, addresses=addresses)

    def refusal(self, address: IPAddress) -> str | None:
        """Why fetching from ``address`` is refused (e.g. ``"a loopback"``), or None if allowed."""
        if self.allow_private or any(address in n for n in self.allow_networks):
            return None
        return classify_address(address)

    async def _get(self, target: _Target) -> bytes | str:
        """Fetch one hop: the body, or the next URL when the answer is a redirect."""
        last_error: httpx.HTTPError | None = None
        for address in target.addresses:
            try:
                return await self._get_from(target, address)
            except httpx.ConnectError as e:  # try the next checked address of the same name
                last_error = e
            except httpx.TimeoutException:
                raise _rejected(
                    f"timed out fetching the image URL from {target.host}", "image_fetch_failed"
                ) from None
            except (httpx.HTTPError, httpx.InvalidURL) as e:
                raise _rejected(
                    f"fetching the image URL from {target.host} failed: {_describe(e)}", "image_fetch_failed"
                ) from None
        detail = _describe(last_error) if last_error else "no address"
        raise _rejected(f"could not connect to image URL host {target.host}: {detail}", "image_fetch_failed")

    async def _get_from(self, target: _Target, address: IPAddress) -> bytes | str:
        parts = target.parts
        default_port = 443 if target.scheme == "https" else 80
        port = "" if target.port == default_port else f":{target.port}"
        ip = f"[{address}]" if address.version == 6 else str(address)
        name = f"[{target.host}]" if ":" in target.host else target.host
        # The checked address goes in the URL; the original name stays in Host and in the TLS checks.
        request_url = urlunsplit((parts.scheme, ip + port, parts.path or "/", parts.query, ""))
        extensions = {}
        if target.scheme == "https" and literal_ip(target.host) is None:
            extensions["sni_hostname"] = target.host
        async with self._client.stream(
            "GET", request_url, headers={"Host": name + port}, extensions=extensions
        ) as response:
            if response.status_code in _REDIRECTS:
                location: str | None = response.headers.get("location")
                if not location:
                    raise _rejected(
                        f"the image URL answered HTTP {response.status_code} without a Location",
                        "image_fetch_failed",
                    )
                return urljoin(target.url, location)
            if not 200 <= response.status_code < 300:
                raise _rejected(
                    f"the image URL answered HTTP {response.status_code} {response.reason_phrase}".rstrip(),
                    "image_fetch_failed",
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise too_large(int(declared), self.max_bytes)
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    raise ImageRejected(
                        f"image is too large: the image URL sent more than {self.max_bytes:,} bytes",
                        status=413,
                        code="image_too_large",
                    )
            return bytes(body)


@dataclass(frozen=True)
class _Target:
    """One hop, after its checks: where to connect and what to call the host."""

    url: str
    parts: SplitResult
    host: str
    port: int
    addresses: list[IPAddress]

    @property
    def scheme(self) -> str:
        return self.parts.scheme


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        raise _rejected("the image URL is malformed", "invalid_image_url") from None
    if parts.scheme not in ("http", "https"):
        scheme = parts.scheme or "(none)"
        raise _rejected(
            f"image URL scheme {scheme!r} is not supported: use http(s) or a data: URI", "invalid_image_url"
        )
    if not parts.hostname:
        raise _rejected("the image URL has no host", "invalid_image_url")
    return parts


def literal_ip(host: str) -> IPAddress | None:
    """The address a host string denotes by itself, including inet_aton's decimal/octal/hex forms."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def classify_address(address: IPAddress) -> str | None:
    """Name the non-public range ``address`` is in (``"a loopback"``...), or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None:
            inner = classify_address(embedded)
            if inner:
                return f"{inner} (it embeds {embedded})"
    checks = (
        ("is_loopback", "a loopback"),
        ("is_link_local", "a link-local"),
        ("is_unspecified", "an unspecified"),
        ("is_multicast", "a multicast"),
        ("is_private", "a private"),
        ("is_reserved", "a reserved"),
    )
    for attribute, name in checks:
        if getattr(address, attribute):
            return name
    if not address.is_global:
        return "a non-public"
    return None


async def _resolve(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise _rejected(
            f"could not resolve image URL host {host}: {getattr(e, 'strerror', None) or e}",
            "image_fetch_failed",
        ) from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise _rejected(f"could not resolve image URL host {host}", "image_fetch_failed")
    return addresses


def _describe(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text[:200]


def _rejected(message: str, code: str) -> ImageRejected:
    return ImageRejected(message, status=400, code=code)
