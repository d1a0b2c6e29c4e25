"""The load users' HTTP connection: one geventhttpclient client per user, TLS trust and proxies set once.

TLS is verified by default (the system's CAs, or ``--ca-bundle``); ``--insecure`` turns verification
off. A proxy comes from the usual environment variables (``HTTPS_PROXY``/``HTTP_PROXY``, honouring
``NO_PROXY``), as every other HTTP tool on the machine reads them.
"""

from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit

import gevent.ssl
from geventhttpclient import HTTPClient


def new_client(
    url: str, *, timeout_s: float, ca_bundle: str | None = None, insecure: bool = False
) -> HTTPClient:
    """A client with one keep-alive connection to ``url``'s host."""
    parts = urlsplit(url)
    kw: dict[str, object] = {}
    proxy = _proxy_for(url)
    if proxy is not None:
        kw["proxy_host"], kw["proxy_port"] = proxy
    if parts.scheme == "https":
        kw["ssl_context_factory"] = gevent.ssl.create_default_context
        kw["ssl_options"] = {"ca_certs": ca_bundle} if ca_bundle else {}
        kw["insecure"] = insecure
    return HTTPClient.from_url(
        url, concurrency=1, connection_timeout=min(10.0, timeout_s), network_timeout=timeout_s, **kw
    )


def _proxy_for(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy:
        return None
    p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not p.hostname:
        return None
    return p.hostname, p.port or 8080
