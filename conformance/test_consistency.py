"""Image tokens (conformance/CONTRACT.md, ``tokens.*``): invariants within one server, exact counts
for pinned models.

Invariants hold for any model: the same bytes by URL and by base64 cost the same ``prompt_tokens``
(MUST) and get the same deterministic answer (SHOULD); streamed and unstreamed requests count the
same prompt; a bigger image never costs fewer tokens. ``tokens.formula`` runs only for a profile
whose ``token_rule`` names a model family: the image cost, measured as the difference between an
image request and the same text-only request, must equal the published preprocessing rule (written
out below from the model cards, independently of any server code).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from eyechart.conform.checks import check, expect, fail, skip
from eyechart.conform.session import Session, json_of, prompt_tokens
from eyechart.images import fixtures

IMAGE = "jpeg-rgb"
PROMPT = "What is in this image?"
GROWING_SIDES = (64, 256, 640, 1200)  # square images, small to past most rescale caps
PINNED_SIZES = ((256, 256), (1000, 400), (560, 1500), (300, 27), (1200, 1200), (2000, 500))


def _deterministic(api: Session, images: list[str], *, url: bool = False, **opts: Any) -> dict[str, Any]:
    return api.vision_body(images, PROMPT, url=url, temperature=0, seed=7, max_tokens=16, **opts)


def _parse(api: Session, ex: Any, what: str) -> tuple[int, str]:
    """(prompt_tokens, content) of a 200 response."""
    __tracebackhide__ = True
    expect(ex.status == 200, f"{what} did not get 200", exchange=ex, expected=200, got=ex.status)
    tokens = prompt_tokens(ex, api.profile, what)
    choices = json_of(ex).get("choices") or [{}]
    content = ((choices[0] or {}).get("message") or {}).get("content") or ""
    return tokens, str(content)


@pytest.fixture(scope="module")
def by_transport(api: Session) -> dict[str, tuple[Any, int, str]]:
    """The same deterministic request with the same bytes by URL and as base64."""
    out = {}
    for name, url in (("url", True), ("base64", False)):
        ex = api.chat(_deterministic(api, [IMAGE], url=url))
        out[name] = (ex, *_parse(api, ex, f"an image by {name}"))
    return out


@check(
    "tokens.url_equals_base64",
    severity="MUST",
    clause="tokens.invariants",
)
def test_url_equals_base64(by_transport: dict[str, tuple[Any, int, str]]) -> None:
    url_ex, url_tokens, _ = by_transport["url"]
    _, b64_tokens, _ = by_transport["base64"]
    expect(
        url_tokens == b64_tokens,
        "the same image counts differently by URL and as base64",
        exchange=url_ex,
        expected=b64_tokens,
        got=url_tokens,
    )


@check(
    "tokens.url_equals_base64_answer",
    severity="SHOULD",
    clause="tokens.invariants",
)
def test_url_equals_base64_answer(by_transport: dict[str, tuple[Any, int, str]]) -> None:
    url_ex, _, url_text = by_transport["url"]
    _, _, b64_text = by_transport["base64"]
    expect(
        url_text == b64_text,
        "the same image gets a different answer by URL than as base64",
        exchange=url_ex,
        expected=b64_text[:300],
        got=url_text[:300],
    )


@check(
    "tokens.stream_equals_nonstream",
    severity="MUST",
    clause="tokens.stable",
)
def test_stream_equals_nonstream(api: Session, by_transport: dict[str, tuple[Any, int, str]]) -> None:
    if not api.profile.include_usage_supported:
        skip(f"profile {api.profile.name} does not support stream_options.include_usage")
    _, want, _ = by_transport["base64"]
    ex, an = api.stream(_deterministic(api, [IMAGE], stream=True, stream_options={"include_usage": True}))
    expect(ex.status == 200, "the streamed request did not get 200", exchange=ex, expected=200, got=ex.status)
    usage = an.usage
    got = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if got is None:
        skip("the stream carried no usage (see stream.usage_chunk)")
    expect(got == want, "streamed and unstreamed prompt_tokens differ", exchange=ex, expected=want, got=got)


def _image_uri(width: int, height: int) -> str:
    return fixtures.data_uri(fixtures.synthetic(width, height, "jpeg", seed=3), "image/jpeg")


@check(
    "tokens.bigger_image_no_fewer",
    severity="MUST",
    clause="tokens.invariants",
)
def test_bigger_image_no_fewer(api: Session) -> None:
    previous: tuple[int, int] | None = None
    for side in GROWING_SIDES:
        ex = api.chat(_deterministic(api, [_image_uri(side, side)]))
        tokens, _ = _parse(api, ex, f"a {side}×{side} image")
        if previous is not None:
            expect(
                tokens >= previous[1],
                f"a {side}×{side} image costs fewer prompt tokens than a {previous[0]}×{previous[0]} one",
                exchange=ex,
                expected=f"≥ {previous[1]}",
                got=tokens,
            )
        previous = (side, tokens)


# ---------------------------------------------------------------------------------------------- the rules


def qwen2_vl(width: int, height: int) -> int:
    """Qwen2/2.5-VL smart_resize: sides to multiples of 28 within [3136, 1,003,520] pixels; + 2 markers."""
    factor, min_pixels, max_pixels = 28, 3136, 1_003_520
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return (h // factor) * (w // factor) + 2


def llama_32_vision(width: int, height: int) -> int:
    """Mllama: the 560 px tile canvas (rows·cols ≤ 4): least upscale, else least downscale; 1601/tile."""
    tile = 560
    canvases = [(r * tile, c * tile) for r in range(1, 5) for c in range(1, 5) if r * c <= 4]
    scales = [min(ch / height, cw / width) for ch, cw in canvases]
    up = [s for s in scales if s >= 1]
    best = min(up) if up else max(scales)
    rows, cols = min(
        ((ch, cw) for (ch, cw), s in zip(canvases, scales, strict=True) if s == best),
        key=lambda c: c[0] * c[1],
    )
    return (rows // tile) * (cols // tile) * 1601


def openai_tiles(width: int, height: int) -> int:
    """GPT-4o class: fit in 2048×2048, shortest side to 768 (if larger), 85 + 170 per 512 px tile."""
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        w, h = w * 2048 / max(w, h), h * 2048 / max(w, h)
    if min(w, h) > 768:
        w, h = w * 768 / min(w, h), h * 768 / min(w, h)
    return 85 + 170 * math.ceil(round(w) / 512) * math.ceil(round(h) / 512)


RULES = {
    "qwen2-vl": qwen2_vl,
    "llama-3.2-vision": llama_32_vision,
    "llava-1.5": lambda width, height: 576,
    "openai-tiles": openai_tiles,
}


@check(
    "tokens.formula",
    severity="MUST",
    clause="tokens.rules",
)
def test_formula(api: Session) -> None:
    rule = api.profile.token_rule
    if rule == "none":
        skip(f"profile {api.profile.name} pins no model (token_rule none): only invariants are checked")
    if rule not in RULES:
        skip(f"no formula for token_rule {rule!r}")
    text_ex = api.chat(api.text_body(PROMPT, temperature=0, seed=7, max_tokens=16))
    text_tokens, _ = _parse(api, text_ex, "the text-only request")
    wrong = []
    last = text_ex
    for width, height in PINNED_SIZES:
        last = api.chat(_deterministic(api, [_image_uri(width, height)]))
        tokens, _ = _parse(api, last, f"a {width}×{height} image")
        want = RULES[rule](width, height)
        if tokens - text_tokens != want:
            wrong.append(f"{width}×{height}: {tokens - text_tokens} (rule {want})")
    if wrong:
        fail(
            f"image token counts differ from the {rule} rule",
            exchange=last,
            expected=f"prompt_tokens − {text_tokens} (text only) = the rule's image tokens",
            got="; ".join(wrong),
        )
