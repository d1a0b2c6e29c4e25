"""Limits (conformance/CONTRACT.md, ``limits.*``): image byte size, image count, context length
(all profile knobs).

Size is judged on the decoded bytes, with images of an exact byte size (a valid 64×64 picture padded
by a chunk decoders skip, so only the byte count matters). A profile with two limits (the documents'
"smaller than 20MB" read as 20,000,000 or 20,971,520 bytes) tests ``size_accept_bytes`` accepted and
``size_refuse_bytes + 1`` refused; a profile that pins one limit L tests L − 1 accepted, L + 1 refused.
A profile with ``size_refuse_bytes = 0`` states no byte limit (vLLM data URIs, llama.cpp): nothing is
expected to be refused, so ``limits.size_refuse`` is skipped and only ``size_accept_bytes`` is tested.
"""

from __future__ import annotations

from typing import Any

from eyechart.conform.checks import check, expect, skip
from eyechart.conform.session import Session, expect_refusal
from eyechart.images import fixtures

BIG_TIMEOUT = 120.0  # a ~27 MB request body, decoded and checked by the target
CONTEXT_WORD = " apple"  # one token in every tokenizer in use, and at least one in any
CONTEXT_WORDS = ("context", "length", "token", "too long", "maximum", "exceed")


def _sizes(api: Session) -> tuple[int, int]:
    accept, refuse = api.profile.size_accept_bytes, api.profile.size_refuse_bytes
    if refuse == 0:  # no byte limit stated: only acceptance is tested
        return accept, 0
    if accept == refuse:
        return accept - 1, refuse + 1
    return accept, refuse + 1


def _exact_uri(n: int) -> str:
    return fixtures.data_uri(fixtures.exact_size_image(n, "png"), "image/png")


def _send(api: Session, uri: str) -> Any:
    body = api.vision_body([uri], "Describe this image in one sentence.", max_tokens=8)
    return api.chat(body, timeout=BIG_TIMEOUT)


@check(
    "limits.size_accept",
    severity="MUST",
    clause="limits.size",
)
def test_size_accept(api: Session) -> None:
    n, _ = _sizes(api)
    ex = _send(api, _exact_uri(n))
    expect(
        ex.status == 200,
        f"an image of {n:,} bytes was not accepted",
        exchange=ex,
        expected=200,
        got=ex.status,
    )


@check(
    "limits.size_refuse",
    severity="MUST",
    clause="limits.size",
)
def test_size_refuse(api: Session) -> None:
    _, n = _sizes(api)
    if n == 0:
        skip(f"profile {api.profile.name} states no image byte limit (size_refuse_bytes = 0)")
    ex = _send(api, _exact_uri(n))
    expect_refusal(ex, f"an image of {n:,} bytes", api.profile, statuses=(400, 413))


@check(
    "limits.too_many_images",
    severity="MUST",
    clause="limits.image_count",
)
def test_too_many_images(api: Session) -> None:
    limit = api.profile.max_images
    if limit is None:
        skip(f"profile {api.profile.name} sets no image count (images.multi_image checks that several work)")
    names = ["colour-red", "colour-blue", "colour-green", "colour-yellow"]
    images = [names[i % len(names)] for i in range(limit + 1)]
    ex = api.chat(api.vision_body(images, "Describe these images.", max_tokens=8))
    expect_refusal(ex, f"{limit + 1} images (the profile allows {limit})", api.profile)
    after = api.chat(api.vision_body(["colour-red"], max_tokens=8))
    expect(
        after.status == 200,
        "after refusing too many images, the server no longer answers a plain request",
        exchange=after,
        expected=200,
        got=after.status,
    )


def _prompt_tokens(api: Session, words: int) -> int | None:
    ex = api.chat(api.vision_body(["png-rgb"], "Count the apples:" + CONTEXT_WORD * words, max_tokens=1))
    body = ex.json if ex.status == 200 and isinstance(ex.json, dict) else {}
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    value = usage.get("prompt_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _words_past(api: Session, ctx: int) -> int:
    """How many words make the prompt exceed ``ctx`` by a small margin in the target's own tokens:
    tokens per word calibrated from two ``usage.prompt_tokens`` answers (one word per token without
    usage). A prompt twice too long can keep a one-at-a-time server busy for minutes."""
    margin = max(16, ctx // 100)
    calibration = 256
    base, more = _prompt_tokens(api, 0), _prompt_tokens(api, calibration)
    if base is None or more is None or more <= base:
        return ctx + margin
    per_word = (more - base) / calibration
    return max(1, -int(-(ctx - base + margin) // per_word))


@check(
    "limits.context_length",
    severity="MUST",
    clause="limits.context",
)
def test_context_length(api: Session) -> None:
    ctx = api.profile.context_length
    if ctx is None:
        skip(f"profile {api.profile.name} does not state the context length")
    words = _words_past(api, ctx)
    prompt = "Count the apples:" + CONTEXT_WORD * words
    ex = api.chat(api.vision_body(["png-rgb"], prompt, max_tokens=1), timeout=BIG_TIMEOUT)
    body = expect_refusal(ex, f"a prompt of more than {ctx:,} tokens", api.profile)
    message = str((body.get("error") or {}).get("message") or "")
    expect(
        any(w in message.lower() for w in CONTEXT_WORDS),
        "the error message does not say the context is too long",
        exchange=ex,
        expected=f"a message naming the limit (one of {', '.join(CONTEXT_WORDS)})",
        got=message[:300],
    )
