"""The fault-injected targets really do what they claim: transparent when clean, broken when asked.

If a break silently did nothing, the test proving "the suite catches it" would prove nothing; so each
sampled break is checked here on the raw wire, against the real reference target behind a real proxy.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import time
from typing import Any

import httpx
import pytest
from faulty_targets import BREAKS, KINDS, LEGAL_VARIANTS, breaking_proxy, hostile_server
from PIL import Image

from eyechart.target.launch import RunningTarget

TIMEOUT = httpx.Timeout(20.0, connect=5.0)


def _auth(t: RunningTarget) -> dict[str, str]:
    return {"Authorization": f"Bearer {t.api_key}"}


def _chat(t: RunningTarget, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": t.model,
        "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 12,
        "temperature": 0,
        "seed": 1,
    }
    body.update(extra)
    return body


def _png_uri(fmt: str = "PNG", size: tuple[int, int] = (64, 64)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buf, format=fmt)
    mime = {"PNG": "png", "WEBP": "webp", "GIF": "gif"}[fmt]
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode()


def _image_chat(t: RunningTarget, uri: str) -> dict[str, Any]:
    content = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": uri}},
    ]
    return _chat(t, messages=[{"role": "user", "content": content}])


def _events(raw: bytes) -> list[str]:
    """WHATWG event-stream parsing (any line ending, optional space, comments, multi-line data)."""
    text = raw.decode().replace("\r\n", "\n").replace("\r", "\n")
    out: list[str] = []
    data: list[str] = []
    for line in text.split("\n"):
        if line == "":
            if data:
                out.append("\n".join(data))
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    return out


def _post(url: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url + "/chat/completions", json=body, headers=headers, timeout=TIMEOUT)


def _strip_ids(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("id", "created")}


def test_catalogue_names_a_clause_for_every_break() -> None:
    for name, b in {**BREAKS, **LEGAL_VARIANTS}.items():
        assert b.name == name and b.clause and b.description
        # a break changes the wire, or is another target (the reference target fetching private URLs)
        assert any((b.request, b.response, b.head, b.events, b.frame)) or b.upstream != "faithful", name
    assert not set(BREAKS) & set(LEGAL_VARIANTS)


def test_unknown_break_is_refused_by_name(target: RunningTarget) -> None:
    with pytest.raises(KeyError, match=r"stream\.no_done"), breaking_proxy(target.base_url, ["nope"]):
        pass


def test_clean_proxy_is_transparent(target: RunningTarget) -> None:
    h = _auth(target)
    body = _chat(target)
    sbody = _chat(target, stream=True, stream_options={"include_usage": True})
    direct, direct_s = _post(target.base_url, body, h), _post(target.base_url, sbody, h)
    with breaking_proxy(target.base_url, []) as url:
        assert url.endswith("/v1/openai")
        via, via_s = _post(url, body, h), _post(url, sbody, h)
        # both route styles are forwarded
        v1 = url.replace("/v1/openai", "/v1")
        assert (
            httpx.get(v1 + "/models", headers=h, timeout=TIMEOUT).json()
            == httpx.get(target.root_url + "/v1/models", headers=h, timeout=TIMEOUT).json()
        )
        unauth = httpx.get(url + "/models", timeout=TIMEOUT)
    assert via.status_code == direct.status_code == 200
    assert via.headers["content-type"] == direct.headers["content-type"]
    assert _strip_ids(via.json()) == _strip_ids(direct.json())
    assert via_s.headers["content-type"] == direct_s.headers["content-type"]
    a, b = _events(via_s.content), _events(direct_s.content)
    assert a[-1] == b[-1] == "[DONE]"
    assert [_strip_ids(json.loads(e)) for e in a[:-1]] == [_strip_ids(json.loads(e)) for e in b[:-1]]
    # byte framing preserved: same bytes once the per-request id and timestamp are masked
    ida, idb = json.loads(a[0])["id"], json.loads(b[0])["id"]
    ca, cb = json.loads(a[0])["created"], json.loads(b[0])["created"]
    assert via_s.content.replace(ida.encode(), b"ID").replace(
        str(ca).encode(), b"T"
    ) == direct_s.content.replace(idb.encode(), b"ID").replace(str(cb).encode(), b"T")
    assert unauth.status_code == 401 and "error" in unauth.json()


def test_stream_breaks_change_the_raw_bytes(target: RunningTarget) -> None:
    h = _auth(target)
    sbody = _chat(target, stream=True, stream_options={"include_usage": True})
    with breaking_proxy(target.base_url, ["stream.no_done"]) as url:
        raw = _post(url, sbody, h).content
    assert b"[DONE]" not in raw and b"chat.completion.chunk" in raw
    with breaking_proxy(target.base_url, ["stream.data_after_done"]) as url:
        ev = _events(_post(url, sbody, h).content)
    assert "[DONE]" in ev and ev[-1] != "[DONE]"
    with breaking_proxy(target.base_url, ["stream.invalid_json"]) as url:
        ev = _events(_post(url, sbody, h).content)
    with pytest.raises(ValueError):
        [json.loads(e) for e in ev if e != "[DONE]"]
    with breaking_proxy(target.base_url, ["stream.id_changes", "stream.no_role"]) as url:
        chunks = [json.loads(e) for e in _events(_post(url, sbody, h).content) if e != "[DONE]"]
    assert len({c["id"] for c in chunks}) == len(chunks) > 2
    assert all("role" not in ch["delta"] for c in chunks for ch in c["choices"])
    with breaking_proxy(target.base_url, ["stream.two_finish_reasons", "usage.include_usage_ignored"]) as url:
        chunks = [json.loads(e) for e in _events(_post(url, sbody, h).content) if e != "[DONE]"]
    assert sum(1 for c in chunks for ch in c["choices"] if ch["finish_reason"]) == 2
    assert not any(c["choices"] == [] for c in chunks)


def test_usage_breaks(target: RunningTarget) -> None:
    h = _auth(target)
    with breaking_proxy(target.base_url, ["usage.unasked_chunk"]) as url:
        chunks = [json.loads(e) for e in _events(_post(url, _chat(target, stream=True), h).content)[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    with breaking_proxy(target.base_url, ["usage.chunk_with_choices", "usage.over_max_tokens"]) as url:
        body = _chat(target, stream=True, stream_options={"include_usage": True})
        chunks = [json.loads(e) for e in _events(_post(url, body, h).content)[:-1]]
        whole = _post(url, _chat(target), h).json()
    assert chunks[-1]["choices"] and chunks[-1]["usage"]["completion_tokens"] == 12 + 5
    assert whole["usage"]["completion_tokens"] == 12 + 5
    u = whole["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]


def test_finish_and_content_type_breaks(target: RunningTarget) -> None:
    h = _auth(target)
    with breaking_proxy(
        target.base_url, ["finish.eos_token", "stream.json_content_type", "response.json_text_plain"]
    ) as url:
        whole = _post(url, _chat(target), h)
        streamed = _post(url, _chat(target, stream=True), h)
    assert whole.headers["content-type"].startswith("text/plain")
    assert json.loads(whole.content)["choices"][0]["finish_reason"] == "eos_token"
    assert streamed.headers["content-type"].startswith("application/json")
    finishes = [
        ch["finish_reason"] for e in _events(streamed.content)[:-1] for ch in json.loads(e)["choices"]
    ]
    assert [f for f in finishes if f] == ["eos_token"]


def test_error_breaks(target: RunningTarget) -> None:
    h = _auth(target)
    bad = _chat(target, messages=[])  # a client mistake: the target answers 400
    assert _post(target.base_url, bad, h).status_code == 400
    with breaking_proxy(target.base_url, ["errors.5xx_for_4xx", "errors.stack_trace"]) as url:
        r = _post(url, bad, h)
    assert r.status_code == 500 and "Traceback (most recent call last)" in r.json()["error"]["message"]
    with breaking_proxy(target.base_url, ["errors.detail_envelope"]) as url:
        r = _post(url, bad, h)
    assert r.status_code == 400 and set(r.json()) == {"detail"}
    with breaking_proxy(target.base_url, ["stream.error_as_sse"]) as url:
        r = _post(url, {**bad, "stream": True}, h)
    assert r.headers["content-type"].startswith("text/event-stream")
    assert "error" in json.loads(_events(r.content)[0])
    with breaking_proxy(target.base_url, ["errors.invented_answer"]) as url:
        r = _post(url, bad, h)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]


def test_auth_and_models_breaks(target: RunningTarget) -> None:
    with breaking_proxy(target.base_url, ["auth.none"], api_key=target.api_key) as url:
        assert _post(url, _chat(target), {"Authorization": "Bearer wrong"}).status_code == 200
    with breaking_proxy(target.base_url, ["auth.missing_key_ok"], api_key=target.api_key) as url:
        assert _post(url, _chat(target), {}).status_code == 200
        assert _post(url, _chat(target), {"Authorization": "Bearer wrong"}).status_code == 401
    with breaking_proxy(target.base_url, ["auth.401_as_sse"]) as url:
        r = _post(url, _chat(target, stream=True), {"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/event-stream")
    with breaking_proxy(target.base_url, ["models.model_missing"]) as url:
        ids = [
            m["id"] for m in httpx.get(url + "/models", headers=_auth(target), timeout=TIMEOUT).json()["data"]
        ]
    assert target.model not in ids and ids


def test_image_breaks(target: RunningTarget) -> None:
    h = _auth(target)
    png = _image_chat(target, _png_uri())
    text_only = _post(
        target.base_url,
        _chat(
            target,
            messages=[{"role": "user", "content": [{"type": "text", "text": "What is in this image?"}]}],
        ),
        h,
    ).json()
    real = _post(target.base_url, png, h).json()
    assert real["usage"]["prompt_tokens"] > text_only["usage"]["prompt_tokens"] + 1
    with breaking_proxy(target.base_url, ["images.one_token"]) as url:
        faked = _post(url, png, h).json()
    assert faked["usage"]["prompt_tokens"] == text_only["usage"]["prompt_tokens"] + 1
    gif = _image_chat(target, _png_uri("GIF"))
    assert 400 <= _post(target.base_url, gif, h).status_code < 500
    with breaking_proxy(target.base_url, ["images.non_image_accepted", "images.tiny_500"]) as url:
        assert _post(url, gif, h).status_code == 200
        assert _post(url, _image_chat(target, _png_uri(size=(1, 1))), h).status_code == 500
    webp = _image_chat(target, _png_uri("WEBP"))
    with breaking_proxy(target.base_url, ["images.webp_dropped"]) as url:
        dropped = _post(url, webp, h).json()
    assert (
        dropped["usage"]["prompt_tokens"] < _post(target.base_url, webp, h).json()["usage"]["prompt_tokens"]
    )
    charset = _image_chat(target, _png_uri().replace("data:image/png;", "data:image/png;charset=utf-8;"))
    with breaking_proxy(target.base_url, ["images.data_uri_variant_500"]) as url:
        assert _post(url, charset, h).status_code == 500
        assert _post(url, png, h).status_code == 200


def test_buffered_stream_arrives_at_once_while_paced_one_does_not(target: RunningTarget) -> None:
    h = _auth(target)
    body = _chat(target, stream=True, max_tokens=15)

    def spread(url: str) -> float:
        stamps = []
        with httpx.stream("POST", url + "/chat/completions", json=body, headers=h, timeout=TIMEOUT) as r:
            for _ in r.iter_raw():
                stamps.append(time.monotonic())
        return stamps[-1] - stamps[0]

    with breaking_proxy(target.base_url, ["stream.buffered"]) as url:
        assert spread(url) < 0.1
    with breaking_proxy(target.base_url, ["sse.paced"]) as url:
        assert spread(url) > 0.2


@pytest.mark.parametrize("variant", ["sse.crlf", "sse.cr", "sse.comments", "sse.multiline", "sse.no_space"])
def test_legal_framings_carry_the_same_events(target: RunningTarget, variant: str) -> None:
    h = _auth(target)
    body = _chat(target, stream=True)
    clean = [json.loads(e)["choices"] for e in _events(_post(target.base_url, body, h).content)[:-1]]
    with breaking_proxy(target.base_url, [variant]) as url:
        r = _post(url, body, h)
    ev = _events(r.content)
    assert ev[-1] == "[DONE]" and [json.loads(e)["choices"] for e in ev[:-1]] == clean
    assert r.content != _post(target.base_url, body, h).content


def _raw_bytes_within(url: str, seconds: float) -> bytes:
    """What a raw socket receives in ``seconds`` after sending a request (no HTTP client in the way)."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    got = b""
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(b"POST /v1/openai/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                piece = sock.recv(65536)
            except TimeoutError:
                break
            if not piece:
                break
            got += piece
    return got


def test_slow_and_silent_servers_drip_or_say_nothing() -> None:
    with hostile_server("slow_headers") as url:
        dripped = _raw_bytes_within(url, 1.6)
    assert b"HTTP/1.1 200".startswith(dripped) and 2 <= len(dripped) <= 6
    with hostile_server("hang") as url:
        assert _raw_bytes_within(url, 1.0) == b""


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in ("hang", "slow_headers")])
def test_hostile_servers_misbehave_and_stop(kind: str) -> None:
    t0 = time.monotonic()
    with hostile_server(kind) as url:
        try:
            with httpx.stream(
                "POST",
                url + "/chat/completions",
                json={"stream": True},
                timeout=httpx.Timeout(1.5, connect=2.0),
            ) as r:
                got = 0
                for piece in r.iter_raw():
                    got += len(piece)
                    if got > 500_000 or time.monotonic() - t0 > 1:
                        break
            outcome = f"status {r.status_code}, {got} bytes"
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
    expected = {
        "garbage": "RemoteProtocolError",
        "reset": ("ReadError", "RemoteProtocolError"),
    }
    if kind in expected:
        assert outcome in expected[kind], outcome
    else:  # endless and huge keep sending: the client is the one that has to stop
        assert outcome.startswith("status 200") and int(outcome.split(", ")[1].split()[0]) > 1000
    assert time.monotonic() - t0 < 8
