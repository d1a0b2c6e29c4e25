"""The session: how a check talks to the target (the ``api`` fixture of ``conformance/``).

One :class:`Session` per run holds the target's base URL, key, model and profile, an httpx client
with bounded timeouts, and (lazily) the fixture image server for URL cases. Every request goes
through :meth:`Session.request`, which records the :class:`~eyechart.wire.exchange.Exchange` for the
current check, so a finding always has its evidence and a curl reproducer. Bodies are assembled with
the request builder (:mod:`eyechart.wire.build`) and checked against the request schema before
sending: a request the harness built wrong raises :class:`~eyechart.wire.build.HarnessBug` instead of
being blamed on the server.

    ex = api.chat(api.vision_body(images=["png-rgb"], prompt="What colour?", max_tokens=16))
    ex, stream = api.stream(api.vision_body(images=["jpeg-rgb"]))
    ex = api.request("GET", "/models", auth="wrong-key")

A transport failure (refused, reset, timeout) of a request a check needs ends the check as failed with
that exchange as evidence (``CheckFailed``), so a hanging target fails its cases, never the run. Every
timeout is attributed first (:mod:`eyechart.conform.liveness`): a busy target makes the check
``not_judged`` rather than failed, a kind of request the target never finishes fails fast after two.

Reproducers stay usable after the run: with a report folder (``body_dir``), a finding whose request
was too big to inline gets its exact body written to ``<run>/bodies/<check-id>-<n>.json``
(:meth:`Session.save_bodies`), and a request whose image URL points at the run's own fixture server
carries a comment saying how to serve the same images again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypedDict, Unpack

import httpx

from eyechart import images
from eyechart.conform.checks import CheckFailed
from eyechart.conform.evidence import evidence_for as evidence_for  # re-exported for older imports
from eyechart.conform.evidence import exchange_summary as exchange_summary
from eyechart.conform.evidence import key_exchange as key_exchange
from eyechart.conform.liveness import Liveness, request_kind
from eyechart.conform.reading import expect_refusal as expect_refusal  # re-exported: cases import these
from eyechart.conform.reading import first_choice as first_choice
from eyechart.conform.reading import header as header
from eyechart.conform.reading import json_of as json_of
from eyechart.conform.reading import media_type as media_type
from eyechart.conform.reading import prompt_tokens as prompt_tokens
from eyechart.conform.watch import Watch
from eyechart.images.server import FixtureServer
from eyechart.profiles import Profile
from eyechart.target import DEFAULT_API_KEY
from eyechart.target.launch import RunningTarget, start_target
from eyechart.wire import build, exchange
from eyechart.wire.discovery import PROBE_MAX_BYTES
from eyechart.wire.discovery import TargetError as SessionError  # the name callers of Session.open catch
from eyechart.wire.discovery import normalise_base_url as normalise_base_url
from eyechart.wire.discovery import resolve_model as resolve_model
from eyechart.wire.exchange import Exchange
from eyechart.wire.sse import StreamAnalysis

DEFAULT_TIMEOUT = 30.0  # seconds for one whole request; a check may ask for more (large images)
CONNECT_TIMEOUT = 5.0
STREAM_TIMEOUT = 30.0  # a whole stream of a small answer; an endless one is cut here
PROBE_TIMEOUT = 5.0  # the cheap chat probe after a timeout: a target not busy answers it at once
PATIENCE = 2.0  # x the request timeout: how long a busy target may take to answer the probe again
LONGEST = 4.0  # x the request timeout: the cap on a longer timeout a check asks for (huge bodies)
DEFAULT_CAP = 32  # completion tokens a body asks for unless a case says otherwise: keeps runs fast
# The embedded target fetches from our loopback fixture server, and runs its latency model 10x faster:
# streams still arrive token by token (incremental delivery stays checkable) but the suite is quick.
EMBEDDED_TARGET_ARGS = ("--allow-private-urls", "--speed", "10")


class SessionOptions(TypedDict, total=False):
    """How a session reaches and treats the target beyond its address, key, model and profile: the
    optional keywords of both :class:`Session` and :meth:`Session.open` (one list, passed through)."""

    fixture_host: str | None  # bind address of the fixture image server (default 127.0.0.1)
    fixture_url: str | None  # the fixture server's base URL as the target reaches it
    timeout: float  # seconds for one whole request (default DEFAULT_TIMEOUT)
    body_dir: Path | None  # where a finding's big request bodies go (None: reproducers abbreviate)
    max_time: float | None  # seconds for the whole run (None: no limit)
    headers: Mapping[str, str] | None  # --header: on every request, under a check's own headers
    ca_bundle: str | None  # --ca-bundle: trust these CA certificates too
    insecure: bool  # --insecure: verify no certificate


class Session:
    """The target as the checks see it; see the module docstring."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        model: str,
        profile: Profile,
        target: RunningTarget | None = None,
        **options: Unpack[SessionOptions],
    ) -> None:
        timeout = options.get("timeout", DEFAULT_TIMEOUT)
        max_time = options.get("max_time")
        self.base_url = base_url
        self.api_key = api_key
        self.headers = dict(options.get("headers") or {})  # on every request, under a check's own headers
        self.model = model
        self.profile = profile
        self.timeout = timeout
        self.embedded = target is not None
        self._target = target
        self._fixture_host = options.get("fixture_host")
        self._fixture_url = options.get("fixture_url")
        self._fixtures: FixtureServer | None = None
        self.client = exchange.bounded_client(
            timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=8),
            ca_bundle=options.get("ca_bundle"),
            insecure=options.get("insecure", False),
        )
        self.body_dir = options.get("body_dir")  # None: reproducers of big bodies abbreviate them
        self.check_id: str | None = None
        self._log: list[Exchange] = []
        self.watch = Watch(profile)  # the invariant registry, run on every exchange recorded
        self._saved = 0  # body files written for the current check
        self.liveness = Liveness(
            self._probe,
            patience_s=PATIENCE * timeout,
            deadline=time.monotonic() + max_time if max_time else None,
            max_time_s=max_time,
        )

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        *,
        base_url: str | None,
        api_key: str | None,
        model: str | None,
        profile: Profile,
        **options: Unpack[SessionOptions],
    ) -> Session:
        """Connect to ``base_url`` (or start the embedded target) and settle the model under test; the
        preflight sends what the checks will (``headers``, ``ca_bundle`` and ``insecure`` of ``options``)."""
        target = None
        if base_url is None:
            try:
                target = start_target(args=EMBEDDED_TARGET_ARGS)
            except Exception as exc:  # the embedded target is ours: any failure is a clear usage stop
                raise SessionError(f"cannot start the embedded target: {exc}") from exc
            base_url = target.base_url
            api_key = api_key or target.api_key or DEFAULT_API_KEY
        try:
            url = normalise_base_url(base_url, profile)
            chosen = resolve_model(
                url,
                api_key,
                model,
                headers=options.get("headers"),
                ca_bundle=options.get("ca_bundle"),
                insecure=options.get("insecure", False),
            )
        except BaseException:
            if target is not None:
                target.stop()
            raise
        return cls(base_url=url, api_key=api_key, model=chosen, profile=profile, target=target, **options)

    def close(self) -> None:
        self.client.close()
        if self._fixtures is not None:
            self._fixtures.stop()
            self._fixtures = None
        if self._target is not None:
            self._target.stop()
            self._target = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def begin_check(self, check_id: str) -> None:
        """Start recording the exchanges of ``check_id`` (the plugin calls this before each check)."""
        self.check_id = check_id
        self._log = []
        self._saved = 0

    def check_exchanges(self) -> list[Exchange]:
        return list(self._log)

    def save_bodies(self, check_id: str, *exchanges: Exchange | None) -> list[Path]:
        """Write the exact body of each exchange whose reproducer had to abbreviate it to
        ``<body_dir>/<check-id>-<n>.json`` and point its reproducer there, relative to the report
        folder (``--data-binary @bodies/<file>``), so it works wherever the folder is moved."""
        if self.body_dir is None:
            return []
        written = []
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", check_id).strip("_") or "check"
        for ex in exchanges:
            if ex is None or ex.sent_body is None or "--data-binary @-" not in ex.curl:
                continue
            self._saved += 1
            path = ex.save_body(self.body_dir / f"{stem}-{self._saved}.json")
            if path is not None:
                # relative to the report folder, so the reproducer still works after CI moves it
                relative = f"{self.body_dir.name}/{path.name}"
                ex.curl = (
                    "# run from the report folder (the one holding conformance.json): "
                    f"the exact body is {relative}\n" + ex.curl.replace(f"@{path}", f"@{relative}")
                )
                self._note_fixture_urls(ex)  # the reproducer was rebuilt: keep its fixture note
                written.append(path)
        return written

    # ------------------------------------------------------------------ fixtures

    @property
    def fixtures(self) -> FixtureServer:
        """The fixture image server, started on first use (``--fixture-host`` / ``--fixture-url``)."""
        if self._fixtures is None:
            self._fixtures = FixtureServer(
                bind=self._fixture_host or "127.0.0.1", public_url=self._fixture_url
            ).start()
        return self._fixtures

    def fixture_url(self, name: str) -> str:
        """The URL (as the target reaches it) of the fixture ``name``."""
        return self.fixtures.url(f"/img/{name}")

    @staticmethod
    def data_uri(name: str, media_type: str | None = None) -> str:
        """The fixture ``name`` as a base64 data URI (optionally mislabelled with ``media_type``)."""
        return images.get(name).data_uri(media_type)

    # ------------------------------------------------------------------ bodies

    def image_part(self, image: str, *, url: bool = False, detail: str | None = None) -> build.Part:
        """An ``image_url`` part: ``image`` is a fixture name, a data URI or any URL (``scheme://``)."""
        if image.startswith("data:") or "://" in image:
            ref = image
        else:
            ref = self.fixture_url(image) if url else self.data_uri(image)
        return build.image_part(ref, detail)

    def vision_body(
        self,
        images: Iterable[str] = ("png-rgb",),
        prompt: str = "Describe this image in one sentence.",
        *,
        stream: bool = False,
        url: bool = False,
        system: str | None = None,
        **opts: Any,
    ) -> dict[str, Any]:
        """A one-turn chat body with ``images`` (fixture names, data URIs or URLs) and ``prompt``
        (the user content is always a list of parts); keywords as for :meth:`body`."""
        parts = [build.text_part(prompt), *(self.image_part(i, url=url) for i in images)]
        messages = [build.system(system)] if system is not None else []
        messages.append(build.user(*parts))
        return self.body(messages, stream=stream, **opts)

    def text_body(self, prompt: str = "Say hello.", *, stream: bool = False, **opts: Any) -> dict[str, Any]:
        """A one-turn text-only chat body (the content a plain string); keywords as for :meth:`body`."""
        return self.body([build.user(prompt)], stream=stream, **opts)

    def body(
        self,
        messages: list[build.Message],
        *,
        stream: bool = False,
        max_tokens: int | None = DEFAULT_CAP,
        **opts: Any,
    ) -> dict[str, Any]:
        """A chat body for ``messages`` with the model under test, not yet validated (cases mutate it).

        ``max_tokens`` is the completion cap under the profile's parameter name (``max_tokens=8`` sends
        ``max_completion_tokens: 8`` under the openai profile); ``None`` sends no cap. Every other keyword
        becomes a top-level field as given, so ``max_completion_tokens=...`` names that field itself.
        """
        if "max_completion_tokens" in opts:  # the case names the cap field itself
            max_tokens = None
        return build.chat_request(
            self.model,
            messages,
            stream=stream,
            max_tokens=max_tokens,
            profile=self.profile,
            validate=False,
            **opts,
        )

    # ------------------------------------------------------------------ requests

    def _headers(self, own: Mapping[str, str] | None) -> dict[str, str]:
        """The session's ``--header`` values with a check's own headers on top (names compared as HTTP
        does, case-insensitively: a check that sets a header replaces the user's)."""
        mine = {name.lower() for name in own or {}}
        return {**{k: v for k, v in self.headers.items() if k.lower() not in mine}, **(own or {})}

    def _key(self, auth: bool | str) -> str | None:
        return self.api_key if auth is True else auth if isinstance(auth, str) else None

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: bool | str = True,
        timeout: float | None = None,
        allow_transport_error: bool = False,
    ) -> Exchange:
        """One request to ``{base}{path}`` (or a full URL), body ``json``; recorded for the current check.

        ``auth``: True sends the session key, False none, a string that key. A transport failure
        (refused, reset, timeout, too large) raises :class:`CheckFailed` unless ``allow_transport_error``.
        """
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        kind = request_kind(method, url, json)
        self.liveness.before(kind)
        ex = exchange.send(
            self.client,
            method,
            url,
            api_key=self._key(auth),
            json_body=json,
            headers=self._headers(headers),
            timeout=self._bounded(timeout),
            secret=self.api_key,
        )
        self._record(ex)
        self.watch.observe(ex, json, ex.body, self.check_id)
        self.liveness.after(kind, ex)
        if ex.error_class and not allow_transport_error:
            raise CheckFailed(
                f"{method} {path}: no usable response ({ex.error_class}: {ex.error})",
                exchange=ex,
                expected="a complete HTTP response",
                got=ex.error_class,
            )
        return ex

    def chat(
        self,
        body: Any,
        *,
        valid: bool = True,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool | str = True,
        allow_transport_error: bool = False,
    ) -> Exchange:
        """``POST {base}/chat/completions``; ``valid=False`` sends a deliberately invalid body."""
        if valid:
            build.check_request(body, self.profile)
        return self.request(
            "POST",
            "/chat/completions",
            json=body,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_transport_error=allow_transport_error,
        )

    def stream(
        self,
        body: Any,
        *,
        valid: bool = True,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool | str = True,
        allow_transport_error: bool = False,
        stream_timeout: float | None = None,
    ) -> tuple[Exchange, StreamAnalysis]:
        """A streamed chat request read by the strict SSE reader: the exchange and its analysis.

        ``stream: true`` is set on the body if missing. The analysis keeps the raw bytes and every
        framing event. ``timeout`` bounds each read, ``stream_timeout`` the whole stream (default 60 s):
        a stream that never ends is cut there (``ex.error_class == "timeout"``) and the check judges it;
        only a stream that never started raises :class:`CheckFailed`.
        """
        if isinstance(body, dict) and "stream" not in body:
            body = {**body, "stream": True}
        if valid:
            build.check_request(body, self.profile)
        url = self.base_url + "/chat/completions"
        kind = request_kind("POST", url, body)
        self.liveness.before(kind)
        ex, analysis = exchange.send_stream(
            self.client,
            url,
            api_key=self._key(auth),
            json_body=body,
            headers=self._headers(headers),
            timeout=self._bounded(timeout),
            total_timeout=self._bounded(stream_timeout or max(self._stream_timeout, timeout or 0.0)),
            secret=self.api_key,
        )
        self._record(ex)
        whole = ex.body if ex.status != 200 else None if analysis.raw_truncated else analysis.raw
        self.watch.observe(ex, body, whole, self.check_id)
        self.liveness.after(kind, ex)
        if ex.error_class and ex.status is None and not allow_transport_error:
            raise CheckFailed(
                f"stream: no response ({ex.error_class}: {ex.error})",
                exchange=ex,
                expected="an HTTP response",
            )
        return ex, analysis

    def _record(self, ex: Exchange) -> None:
        self._note_fixture_urls(ex)
        self._log.append(ex)

    @property
    def _stream_timeout(self) -> float:
        """A whole stream of a small answer: 30 s at the default request timeout, scaled with it."""
        return STREAM_TIMEOUT * self.timeout / DEFAULT_TIMEOUT

    def _bounded(self, asked: float | None) -> float:
        """A request's time limit: the session's, or what the check asked for capped at ``LONGEST``
        request timeouts; never past the run's ``--max-time`` (at least one second)."""
        seconds = self.timeout if asked is None else min(asked, LONGEST * self.timeout)
        left = self.liveness.remaining()
        return seconds if left is None else max(1.0, min(seconds, left))

    def _probe(self) -> Exchange:
        """The cheap question asked after a timeout: a one-token chat answer (not recorded for a check)."""
        body = build.chat_request(
            self.model, [build.user("Say OK.")], max_tokens=1, profile=self.profile, validate=False
        )
        return exchange.send(
            self.client,
            "POST",
            self.base_url + "/chat/completions",
            api_key=self.api_key,
            json_body=body,
            headers=self.headers,
            timeout=min(PROBE_TIMEOUT, self.timeout),
            max_body_bytes=PROBE_MAX_BYTES,
            secret=self.api_key,
        )

    def worth_rerun(self, ex: Exchange | None) -> bool:
        """Should a check that failed on ``ex`` run once more (see :mod:`eyechart.conform.liveness`)?
        Only for an exchange this check sent itself (a shared one would be judged the same again)."""
        return ex is not None and any(x is ex for x in self._log) and self.liveness.worth_rerun(ex)

    def _note_fixture_urls(self, ex: Exchange) -> None:
        """A reproducer whose image URLs point at this run's fixture server (stopped after the run) says
        how to serve the same images at the same address again."""
        if self._fixtures is None or self._fixtures.base_url not in (ex.request_body or ""):
            return
        server = self._fixtures
        serve = f"eyechart fixtures serve --bind {server.bind or '0.0.0.0'} --port {server.port}"
        if server.public_url:
            serve += f" --public-url {server.public_url}"
        ex.curl = (
            f"# image URLs point at this run's fixture server {server.base_url}, stopped after the run;\n"
            f"# serve the same images there first: {serve}\n{ex.curl}"
        )

    def models(self, *, auth: bool | str = True) -> Exchange:
        """``GET {base}/models``."""
        return self.request("GET", "/models", auth=auth)

    def wait_until_healthy(self, seconds: float = 10.0) -> bool:
        """After a hostile case: does the target still answer ``/models`` within ``seconds``?"""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ex = self.request("GET", "/models", timeout=min(5.0, seconds), allow_transport_error=True)
            if ex.status is not None and ex.status < 500:
                return True
            time.sleep(0.2)
        return False
