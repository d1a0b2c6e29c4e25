"""What the reference target "sees": deterministic answers that really depend on the images.

A conformance or load run needs answers that change when the images change (so a server that drops
an image is caught) yet are reproducible (so stream and non-stream, URL and base64 can be compared).
:func:`answer` describes, for every image in order: its size, orientation and format, and its dominant
colours, quantised to twelve names (red, green, blue, yellow, orange, purple, pink, brown, black,
white, gray, cyan; a solid square of a CSS/Pillow colour of those names, or a pure primary, is named
exactly). For a prompt that asks to read (read, text, OCR, transcribe, extract, invoice, receipt,
document ...), it adds the text a real OCR model reads: rapidocr-onnxruntime, whose ONNX weights ship
inside its wheel (one engine per process, loaded lazily, used under a lock).

Without rapidocr installed (the ``ocr`` extra), OCR prompts still get a 200: the answer says plainly
that text reading is unavailable on this server; :func:`ocr_available` lets the app report it.

Colour and OCR results are cached per image SHA-256 (bounded LRU), so repeated images cost nothing.
``answer`` blocks (OCR takes a fraction of a second): call it in a worker thread.
Same prompt, images and seed → same answer; the seed only picks among equivalent phrasings.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from PIL import Image, ImageOps

from eyechart.target.decode import DecodedImage
from eyechart.target.tokens import split_tokens

# name → prototype RGB values; each pixel takes the name of its nearest prototype.
PALETTE: dict[str, tuple[tuple[int, int, int], ...]] = {
    "red": ((255, 0, 0), (220, 20, 60), (178, 34, 34), (139, 0, 0), (128, 0, 0)),
    "green": ((0, 128, 0), (0, 255, 0), (34, 139, 34), (50, 205, 50), (0, 100, 0), (144, 238, 144)),
    "blue": ((0, 0, 255), (0, 0, 128), (0, 0, 139), (65, 105, 225), (30, 144, 255), (70, 130, 180)),
    "yellow": ((255, 255, 0), (255, 215, 0), (255, 255, 128)),
    "orange": ((255, 165, 0), (255, 140, 0), (255, 128, 0), (255, 69, 0)),
    "purple": ((128, 0, 128), (255, 0, 255), (148, 0, 211), (75, 0, 130), (138, 43, 226), (238, 130, 238)),
    "pink": ((255, 192, 203), (255, 105, 180), (255, 20, 147), (255, 182, 193)),
    "brown": ((165, 42, 42), (139, 69, 19), (160, 82, 45), (210, 105, 30), (128, 64, 0)),
    "black": ((0, 0, 0), (30, 30, 30)),
    "white": ((255, 255, 255), (245, 245, 245), (250, 250, 240)),
    "gray": ((128, 128, 128), (169, 169, 169), (192, 192, 192), (211, 211, 211), (80, 80, 80)),
    "cyan": ((0, 255, 255), (0, 139, 139), (0, 128, 128), (64, 224, 208), (135, 206, 235)),
}
COLOUR_NAMES = tuple(PALETTE)

_OCR_WORDS = re.compile(
    r"\b(read|reads|reading|text|texts|ocr|transcribe|transcription|extract|invoice|receipt|document|"
    r"documents|written|writing|words?|says?|letters|caption|label)\b",
    re.IGNORECASE,
)
_ANALYSIS_SIZE = 96  # colours are judged on a thumbnail at most this many pixels a side
_OCR_MAX_SIDE = 1600  # larger images are scaled down before OCR to bound its time
_CACHE_SIZE = 512

K = TypeVar("K")
V = TypeVar("V")


class _LRU(Generic[K, V]):
    """A small thread-safe LRU: analysis of an image is a pure function of its bytes."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: K, compute: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = compute()  # outside the lock: two threads may compute the same key; both agree
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class ColourShare:
    name: str
    share: float  # 0..1 of the image's pixels


_colour_cache: _LRU[str, tuple[ColourShare, ...]] = _LRU(_CACHE_SIZE)
_ocr_cache: _LRU[str, tuple[str, ...]] = _LRU(_CACHE_SIZE)


def _open_upright(image: DecodedImage, max_side: int) -> Image.Image:
    """The image as RGB, EXIF orientation applied, transparency flattened on white, at most max_side."""
    with Image.open(io.BytesIO(image.data)) as im:
        if im.format == "JPEG":
            im.draft("RGB", (max_side, max_side))  # let libjpeg decode at a reduced scale
        im.load()
        upright = ImageOps.exif_transpose(im)
    if upright.mode in ("RGBA", "LA", "PA") or (upright.mode == "P" and "transparency" in upright.info):
        rgba = upright.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        upright = flat
    else:
        upright = upright.convert("RGB")
    if max(upright.size) > max_side:
        upright.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return upright


def _palette_image() -> tuple[Image.Image, list[str]]:
    names: list[str] = []
    flat: list[int] = []
    for name, prototypes in PALETTE.items():
        for rgb in prototypes:
            names.append(name)
            flat.extend(rgb)
    pal = Image.new("P", (1, 1))
    pal.putpalette(flat + flat[:3] * (256 - len(names)))  # pad with a copy of the first entry
    return pal, names


_PALETTE_IMAGE, _PALETTE_NAMES = _palette_image()


def dominant_colours(image: DecodedImage) -> tuple[ColourShare, ...]:
    """Named colours covering at least 5% of the image, largest share first (cached by SHA-256)."""
    return _colour_cache.get_or_compute(image.sha256, lambda: _compute_colours(image))


def _compute_colours(image: DecodedImage) -> tuple[ColourShare, ...]:
    small = _open_upright(image, _ANALYSIS_SIZE)
    # Nearest palette entry per pixel (Euclidean RGB, no dithering), done in C by Pillow.
    indexed = small.quantize(palette=_PALETTE_IMAGE, dither=Image.Dither.NONE)
    totals: dict[str, int] = {}
    for count, value in indexed.getcolors(maxcolors=256) or []:
        index = int(value) if isinstance(value, int) else 0  # a "P" image reports palette indices
        name = _PALETTE_NAMES[index] if index < len(_PALETTE_NAMES) else _PALETTE_NAMES[0]
        totals[name] = totals.get(name, 0) + count
    pixels = small.width * small.height
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], COLOUR_NAMES.index(kv[0])))
    shares = [ColourShare(name, count / pixels) for name, count in ranked if count / pixels >= 0.05]
    return tuple(shares[:4]) or (ColourShare(ranked[0][0], ranked[0][1] / pixels),)


# --- OCR -------------------------------------------------------------------------------------------

_ocr_lock = threading.Lock()
_ocr_engine: Any = None
_ocr_missing: str | None = None


def ocr_available() -> bool:
    """True when rapidocr-onnxruntime can be imported (its model weights ship in the wheel)."""
    global _ocr_missing
    if _ocr_engine is not None:
        return True
    if _ocr_missing is not None:
        return False
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except Exception as e:  # ImportError, or a broken onnxruntime install
        _ocr_missing = f"{type(e).__name__}: {e}"
        return False
    return True


def preload_ocr() -> bool:
    """Load the OCR engine now (about half a second) instead of on the first OCR prompt."""
    return _engine() is not None


def _engine() -> Any:
    global _ocr_engine
    if _ocr_engine is not None or not ocr_available():
        return _ocr_engine
    with _ocr_lock:
        if _ocr_engine is None:
            from rapidocr_onnxruntime import RapidOCR

            # Detection on the image's own scale (max side 960) with wider boxes: about 10x faster
            # than the default min-side upscaling on small documents, and keeps spaces between words.
            _ocr_engine = RapidOCR(
                det_limit_type="max", det_limit_side_len=960, det_unclip_ratio=2.0, use_cls=False
            )
    return _ocr_engine


def read_text(image: DecodedImage) -> tuple[str, ...]:
    """The lines of text OCR finds in the image, top to bottom (cached by SHA-256)."""
    return _ocr_cache.get_or_compute(image.sha256, lambda: _compute_text(image))


def _compute_text(image: DecodedImage) -> tuple[str, ...]:
    engine = _engine()
    if engine is None:
        return ()
    upright = _open_upright(image, _OCR_MAX_SIDE)
    if min(upright.size) < 8:
        return ()
    with _ocr_lock:
        result, _elapsed = engine(upright, use_cls=False)
    lines = [str(item[1]).strip() for item in result or [] if float(item[2]) >= 0.5]
    return tuple(line for line in lines if line)


def wants_text(prompt: str) -> bool:
    """Whether the prompt asks to read text from the images."""
    return _OCR_WORDS.search(prompt) is not None


# --- answers ---------------------------------------------------------------------------------------

_OPENERS = (
    "I can see {count}.",
    "There {is_are} {count} in this message.",
    "You sent {count}.",
)
_NO_IMAGE_OPENERS = (
    "No image came with this message, so this reply is built from your text alone.",
    "This message has no image attached; I am answering from the text.",
    "Without an image to look at, here is a reply based on what you wrote.",
)
_CLOSERS = (
    "That is everything I can tell from the pixels.",
    "These observations come straight from the image data.",
    "This description is derived from the image content itself.",
)


def answer(prompt: str, images: Sequence[DecodedImage], seed: int | None = None) -> str:
    """A deterministic answer about the images (and the prompt); see the module docstring."""
    pick = _chooser(prompt, images, seed)
    if not images:
        return _text_only(prompt, pick)
    count = f"{len(images)} image" + ("s" if len(images) != 1 else "")
    parts = [pick(_OPENERS).format(count=count, is_are="is" if len(images) == 1 else "are")]
    overall: dict[str, float] = {}
    for number, image in enumerate(images, 1):
        colours = dominant_colours(image)
        for c in colours:
            overall[c.name] = overall.get(c.name, 0.0) + c.share
        label = f"Image {number}" if len(images) > 1 else "The image"
        parts.append(
            f"{label} is a {image.width}x{image.height} {_shape(image)} {_FORMAT_NAMES[image.format]}; "
            + _describe_colours(colours)
        )
    if wants_text(prompt):
        parts.extend(_ocr_sentences(images))
    if len(images) > 1:
        top = sorted(overall.items(), key=lambda kv: (-kv[1], COLOUR_NAMES.index(kv[0])))[0][0]
        parts.append(f"Across all images the most common colour is {top}.")
    text = " ".join(parts)
    if len(split_tokens(text)) < 40:
        text += " " + pick(_CLOSERS)
    return text


_FORMAT_NAMES = {"jpeg": "JPEG", "png": "PNG", "webp": "WebP"}


def _shape(image: DecodedImage) -> str:
    if image.width == image.height:
        return "square"
    return "landscape" if image.width > image.height else "portrait"


def _describe_colours(colours: Sequence[ColourShare]) -> str:
    if colours[0].share >= 0.95:
        return f"it is almost entirely {colours[0].name} ({colours[0].share:.0%})."
    if len(colours) == 1:
        return f"its dominant colour is {colours[0].name} ({colours[0].share:.0%})."
    return f"its dominant colours are {_join([f'{c.name} ({c.share:.0%})' for c in colours])}."


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _ocr_sentences(images: Sequence[DecodedImage]) -> list[str]:
    if not ocr_available():
        return [
            "Text reading is unavailable on this server: the OCR model (rapidocr-onnxruntime, "
            "the eyechart[ocr] extra) is not installed."
        ]
    out = []
    for number, image in enumerate(images, 1):
        where = f"image {number}" if len(images) > 1 else "the image"
        lines = read_text(image)
        if lines:
            out.append(f'The text in {where} reads: "{" / ".join(lines)}".')
        else:
            out.append(f"I found no readable text in {where}.")
    return out


def _text_only(prompt: str, pick: Callable[[Sequence[str]], str]) -> str:
    words = re.findall(r"[^\W\d_]+|\d+", prompt)
    parts = [pick(_NO_IMAGE_OPENERS)]
    if words:
        longest = sorted(set(words), key=lambda w: (-len(w), w.lower()))[:3]
        parts.append(
            f"Your message has {len(words)} word" + ("s" if len(words) != 1 else "") + f" and "
            f'{len(prompt)} characters; it starts with "{" ".join(words[:6])}".'
        )
        parts.append(f"Its longest words are {_join(longest)}.")
    else:
        parts.append("Your message has no words in it.")
    parts.append("Attach an image to get a description of its size, format, colours and text.")
    return " ".join(parts)


def _chooser(prompt: str, images: Sequence[DecodedImage], seed: int | None) -> Callable[[Sequence[str]], str]:
    digest = hashlib.sha256()
    digest.update(repr(seed).encode())
    digest.update(prompt.encode("utf-8", "surrogatepass"))
    for image in images:
        digest.update(image.sha256.encode())
    state = int.from_bytes(digest.digest()[:8], "big")
    calls = iter(range(1_000))

    def pick(options: Sequence[str]) -> str:
        return options[(state + 7919 * next(calls)) % len(options)]

    return pick
