"""Finding the target before a run: is it there, and which model does it serve?

One bounded implementation for every job (``conform``, ``load``, the Locust file): a hostile or broken
server (garbage, hang, endless or huge ``/models`` answer, reset) ends as a :class:`TargetError` with a
one-line reason within ``timeout`` seconds and 1 MiB of memory, never as a hang. Each job turns a
``TargetError`` into exit code 2. The probe sends what the run will send: the user's ``--header`` values
and TLS settings (``--ca-bundle``, ``--insecure``), so a gateway that wants a header, or a server with a
private CA, passes the preflight exactly when the run would work.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from eyechart.profiles import Profile
from eyechart.wire import exchange
from eyechart.wire.exchange import Exchange

PROBE_TIMEOUT = 5.0
# The embedded target's documented local key (eyechart.target.DEFAULT_API_KEY; the wire layer cannot
# import the target, so the words are repeated here for the hint).
LOCAL_KEY = "eyechart-local"
KEY_HINT = (
    "give the key with --api-key or $EYECHART_API_KEY "
    f"(the embedded target started by `eyechart serve` accepts {LOCAL_KEY!r})"
)
HEADER_HINT = "headers a gateway wants (an api-key, a route) go with --header NAME:VALUE"
TLS_HINT = "give its CA certificates with --ca-bundle FILE (or skip verification with --insecure)"
PROBE_MAX_BYTES = 1 << 20  # a model list is small; a bigger /models answer is not a model list


class TargetError(Exception):
    """The run cannot start: target unreachable, no usable model, bad base URL (exit code 2)."""


def normalise_base_url(base_url: str, profile: Profile) -> str:
    """The SDK-style base URL; a bare ``http://host:port`` gets the profile's ``base_path``."""
    url = base_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TargetError(f"--base-url {base_url!r} is not an http(s) URL like http://127.0.0.1:8000/v1")
    if parts.path in ("", "/"):
        url += profile.base_path.rstrip("/")
    return url


def probe(
    base_url: str,
    api_key: str | None,
    timeout: float = PROBE_TIMEOUT,
    *,
    headers: Mapping[str, str] | None = None,
    ca_bundle: str | None = None,
    insecure: bool = False,
) -> Exchange:
    """``GET {base}/models`` once: proves the target completes an HTTP response at all (any status).

    Bounded in wall-clock time (``timeout``, even against headers dripped byte by byte) and in memory
    (the body is streamed and cut at 1 MiB)."""
    try:
        client = exchange.bounded_client(follow_redirects=False, ca_bundle=ca_bundle, insecure=insecure)
    except OSError as exc:
        raise TargetError(f"--ca-bundle {ca_bundle!r} cannot be read as CA certificates: {exc}") from None
    with client:
        ex = exchange.send(
            client,
            "GET",
            f"{base_url}/models",
            api_key=api_key,
            headers=dict(headers or {}),
            timeout=timeout,
            max_body_bytes=PROBE_MAX_BYTES,
        )
    if ex.error_class is None:
        return ex
    if ex.error_class == "connect" and "CERTIFICATE_VERIFY_FAILED" in (ex.error or ""):
        raise TargetError(f"target {base_url}: its TLS certificate is not trusted ({ex.error}); {TLS_HINT}")
    if ex.error_class == "connect":
        host = urlsplit(base_url).netloc
        raise TargetError(
            f"cannot reach target {base_url} (unreachable: {ex.error}); check the host and port {host} "
            "in --base-url and that the server is running"
        )
    if ex.status is None and ex.error_class == "timeout":
        raise TargetError(f"target {base_url} did not answer GET /models within {timeout:g} s")
    if ex.status is None:
        raise TargetError(
            f"target {base_url} did not answer GET /models with HTTP ({ex.error_class}: {ex.error})"
        )
    raise TargetError(
        f"target {base_url} answered GET /models with HTTP {ex.status} but the response did not complete "
        f"({ex.error_class}: {ex.error})"
    )


def base_path_hint(base_url: str) -> str:
    """What to try when the models route is not found: the base path is most likely wrong."""
    parts = urlsplit(base_url)
    root = f"{parts.scheme}://{parts.netloc}"
    return (
        f"the base path {parts.path or '/'!r} is probably wrong; --base-url should end where the API's "
        f"routes start, e.g. {root}/v1 or {root}/v1/openai"
    )


def resolve_model(
    base_url: str,
    api_key: str | None,
    model: str | None,
    timeout: float = PROBE_TIMEOUT,
    *,
    headers: Mapping[str, str] | None = None,
    ca_bundle: str | None = None,
    insecure: bool = False,
) -> str:
    """``model`` if given (after proving the target answers), else the only model ``/models`` lists;
    anything else is a :class:`TargetError`. ``headers``, ``ca_bundle``, ``insecure`` as the run uses them."""
    ex = probe(base_url, api_key, timeout, headers=headers, ca_bundle=ca_bundle, insecure=insecure)
    if ex.status in (401, 403):
        said = "no key was given" if not api_key else "the key was refused"
        reason = _error_message(ex)
        if reason:
            said += f" (the server said: {reason})"
        raise TargetError(
            f"GET {base_url}/models answered HTTP {ex.status}: {said}; {KEY_HINT}; {HEADER_HINT}"
        )
    if model:
        return model
    if ex.status == 404:
        raise TargetError(f"GET {base_url}/models answered HTTP 404: {base_path_hint(base_url)}")
    if ex.status != 200:
        raise TargetError(f"GET {base_url}/models answered HTTP {ex.status}; name the model with --model")
    try:
        ids = [m["id"] for m in ex.json["data"] if isinstance(m, dict) and isinstance(m.get("id"), str)]
    except (KeyError, TypeError) as exc:
        raise TargetError(f"GET {base_url}/models is not a model list; pass --model") from exc
    if len(ids) != 1:
        listed = ", ".join(ids[:10]) or "none"
        raise TargetError(f"{base_url}/models lists {len(ids)} models ({listed}); choose one with --model")
    return str(ids[0])


def _error_message(ex: Exchange) -> str:
    """The server's own reason for refusing (an OpenAI-style ``error.message``), on one short line."""
    body = ex.json if isinstance(ex.json, dict) else {}
    error = body.get("error")
    message = error.get("message") if isinstance(error, dict) else error
    if not isinstance(message, str):
        return ""
    line = " ".join(message.split())
    return repr(line[:200] + ("…" if len(line) > 200 else ""))
