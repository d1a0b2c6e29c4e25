"""The reference target's answers: deterministic, and really about the images (colours, sizes, text)."""

from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from eyechart.target import vision
from eyechart.target.decode import DecodedImage, decode_bytes
from eyechart.target.tokens import text_tokens
from eyechart.target.vision import COLOUR_NAMES, answer, dominant_colours, ocr_available, wants_text


def image(im: Image.Image, fmt: str = "PNG", **kw: object) -> DecodedImage:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return decode_bytes(buf.getvalue())


def solid(
    colour: str | tuple[int, int, int], size: tuple[int, int] = (64, 64), fmt: str = "PNG"
) -> DecodedImage:
    return image(Image.new("RGB", size, colour), fmt)


# Each name as Pillow/CSS spells it, plus the pure primaries a fixture generator may use.
SOLIDS = [(name, name) for name in COLOUR_NAMES] + [
    ("green", (0, 255, 0)),
    ("purple", (255, 0, 255)),
    ("gray", (192, 192, 192)),
    ("orange", (255, 128, 0)),
    ("brown", (139, 69, 19)),
    ("blue", (0, 0, 128)),
]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize(("name", "colour"), SOLIDS)
def test_solid_squares_are_named_exactly(name: str, colour: str | tuple[int, int, int], fmt: str) -> None:
    img = solid(colour, fmt=fmt)
    assert dominant_colours(img)[0].name == name
    words = set(re.findall(r"[a-z]+", answer("What colour is this square?", [img]).lower()))
    assert name in words
    assert not (words & set(COLOUR_NAMES)) - {name}, "only the square's colour may be named"


def test_two_images_are_described_in_order() -> None:
    red, blue = solid("red", (100, 60)), solid("blue", (30, 90), "JPEG")
    text = answer("Name the colours of the two squares.", [red, blue])
    assert "2 images" in text
    first, second = text.index("Image 1"), text.index("Image 2")
    assert first < text.index("100x60") < text.index("red") < second
    assert second < text.index("30x90") and text.index("blue") > second
    assert "PNG" in text and "JPEG" in text


def test_mixed_image_lists_its_colours_with_shares() -> None:
    im = Image.new("RGB", (200, 100), "white")
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 0, 99, 99), fill="red")
    draw.rectangle((100, 0, 149, 99), fill="blue")
    shares = {c.name: round(c.share, 2) for c in dominant_colours(image(im))}
    assert shares == {"red": 0.5, "blue": 0.25, "white": 0.25}
    text = answer("Describe the picture", [image(im)])
    assert "red (50%)" in text and "blue (25%)" in text and "white (25%)" in text


def test_transparent_png_is_judged_on_white() -> None:
    clear = image(Image.new("RGBA", (32, 32), (0, 0, 0, 0)))
    assert dominant_colours(clear)[0].name == "white"


def test_answer_reports_exif_upright_size() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°: a 40x20 file is shown 20x40
    img = image(Image.new("RGB", (40, 20), "green"), "JPEG", exif=exif.tobytes())
    assert "20x40 portrait JPEG" in answer("What is this?", [img])


def test_same_inputs_same_answer_and_images_change_it() -> None:
    red, blue = solid("red"), solid("blue")
    prompt = "Describe the image."
    assert answer(prompt, [red], seed=7) == answer(prompt, [solid("red")], seed=7)
    assert answer(prompt, [red], seed=7) != answer(prompt, [blue], seed=7)
    assert answer(prompt, [red, red], seed=7) != answer(prompt, [red], seed=7)


def test_seed_picks_among_phrasings_deterministically() -> None:
    red = solid("red")
    answers = {seed: answer("Describe the image.", [red], seed=seed) for seed in range(12)}
    assert len(set(answers.values())) >= 2
    assert all(answer("Describe the image.", [red], seed=s) == a for s, a in answers.items())
    assert all("red" in a for a in answers.values())


def test_text_only_prompt_gets_a_reply_derived_from_it() -> None:
    one = answer("Tell me about lighthouses on rocky coasts", [])
    assert one == answer("Tell me about lighthouses on rocky coasts", [])
    assert "lighthouses" in one
    assert one != answer("Tell me about volcanoes", [])
    assert 30 <= text_tokens(one) <= 120
    assert 30 <= text_tokens(answer("", [])) <= 120


@pytest.mark.parametrize("count", [1, 2, 3])
def test_answers_are_moderately_long(count: int) -> None:
    images = [solid(c) for c in ("red", "green", "blue")[:count]]
    assert 30 <= text_tokens(answer("What do you see?", images)) <= 120


@pytest.mark.parametrize(
    ("prompt", "ocr"),
    [
        ("Read the text in this image", True),
        ("Please transcribe this receipt", True),
        ("Extract the invoice number", True),
        ("OCR this document", True),
        ("What colour is the square?", False),
        ("Describe the scene", False),
    ],
)
def test_ocr_prompts_are_recognised(prompt: str, ocr: bool) -> None:
    assert wants_text(prompt) is ocr


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    return ImageFont.truetype(str(dejavu), size) if dejavu.exists() else ImageFont.load_default(size=size)


def _document(text: str) -> DecodedImage:
    im = Image.new("RGB", (720, 130), "white")
    ImageDraw.Draw(im).text((20, 35), text, fill="black", font=_font(40))
    return image(im)


needs_ocr = pytest.mark.skipif(not ocr_available(), reason="rapidocr-onnxruntime is not installed")


@needs_ocr
def test_ocr_reads_rendered_text() -> None:
    doc = _document("INVOICE 2024 Total 42")
    text = answer("Please read the text in this document.", [doc])
    assert "invoice 2024 total 42" in text.lower()
    assert "invoice" not in answer("What colours are in this image?", [doc]).lower()


@needs_ocr
def test_ocr_per_image_and_none_found() -> None:
    text = answer("Read the text", [solid("blue"), _document("HELLO EYECHART")])
    assert "no readable text in image 1" in text
    assert "hello eyechart" in text.lower()


@needs_ocr
def test_ocr_is_safe_from_threads_and_cached() -> None:
    docs = [_document(f"ORDER {n}") for n in (101, 202, 303)]
    prompt = "Transcribe the text"
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda d: answer(prompt, [d]), docs * 2))
    for n, result in zip((101, 202, 303, 101, 202, 303), results, strict=True):
        assert f"order {n}" in result.lower()
    assert vision.read_text(docs[0]) is vision.read_text(docs[0])  # cached by sha256


def test_ocr_unavailable_says_so_instead_of_failing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vision, "ocr_available", lambda: False)
    text = answer("Read the text in this document", [solid("white")])
    assert "unavailable" in text and "rapidocr" in text
    assert "white" in text


def test_colour_analysis_is_cached_by_sha256() -> None:
    first = dominant_colours(solid("pink"))
    assert dominant_colours(solid("pink")) is first
