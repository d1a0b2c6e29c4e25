"""Capability probes (conformance/CONTRACT.md, ``images.capability``): does the model really see?

They judge the model, not the protocol (test servers run random or tiny models), so their severity is
the profile's ``capability_severity`` (SHOULD by default; a production model's profile may raise it to
MUST). Answers are compared loosely: case-insensitive, and for OCR with whitespace removed, since OCR
output may join words ("INVOICEINV-20931").
"""

from __future__ import annotations

import re
from typing import Any

from eyechart.conform.checks import check, expect, fail
from eyechart.conform.session import Session, json_of
from eyechart.images import fixtures

ANSWER_CAP = 200


def _answer(api: Session, images: list[str], prompt: str) -> tuple[Any, str]:
    ex = api.chat(api.vision_body(images, prompt, temperature=0, seed=7, max_tokens=ANSWER_CAP))
    expect(ex.status == 200, "the probe did not get 200", exchange=ex, expected=200, got=ex.status)
    body = json_of(ex)
    try:
        content = body["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        fail(
            "the response has no choices[0].message.content",
            exchange=ex,
            pointer="/choices/0/message/content",
        )
    return ex, str(content)


@check(
    "capability.colours",
    severity=lambda p: p.capability_severity,
    clause="images.capability",
)
def test_colours(api: Session) -> None:
    squares = ["colour-red", "colour-blue"]
    ex, text = _answer(
        api, squares, "Each image is a solid square of one colour. Name the colour of each image, in order."
    )
    words = set(re.findall(r"[a-z]+", text.lower()))
    wanted = [c for name in squares for c in fixtures.get(name).expect["colours"]]
    missing = [c for c in wanted if c not in words]
    expect(
        not missing,
        f"the answer does not name {', '.join(missing)}",
        exchange=ex,
        expected=wanted,
        got=text[:300],
    )


@check(
    "capability.ocr",
    severity=lambda p: p.capability_severity,
    clause="images.capability",
)
def test_ocr(api: Session) -> None:
    ex, text = _answer(api, ["doc-invoice"], "Read the text of this invoice. What is the invoice number?")
    number = next(t for t in fixtures.get("doc-invoice").expect["tokens"] if t.startswith("INV"))
    squashed = re.sub(r"\s+", "", text).upper()
    expect(
        number in squashed or number.replace("-", "") in squashed,
        f"the answer does not contain the invoice number {number}",
        exchange=ex,
        expected=number,
        got=text[:300],
    )
