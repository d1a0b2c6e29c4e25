"""Image fixtures: every image the conformance cases and load workloads send, made with Pillow on demand.

Each fixture is a named recipe (a function building bytes) plus the facts a check needs about it: its
format judged from the bytes, its size, whether the default contract accepts it, and ``expect`` (known
answers such as the colour of a square or the transcript of a rendered invoice). Files are generated once
into a cache folder; their names carry a hash of the recipe version and the Pillow version, so a cache
never serves stale bytes. The same Pillow version gives the same bytes on every machine: no timestamps,
fixed quality settings, fixed seeds.

    >>> from eyechart.images import fixtures
    >>> fx = fixtures.get("colour-red")
    >>> fx.width, fx.expect["colours"]
    (256, ['red'])
    >>> fixtures.names("refused")[:3]
    ['gif', 'bmp', 'tiff']
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import random
import struct
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import PIL
from PIL import Image, ImageDraw, ImageFont

from eyechart import bundled
from eyechart.images.formats import sniff_format
from eyechart.wire.build import data_uri as wire_data_uri

# Bump when any recipe changes its bytes: it renames every cached file.
RECIPES_VERSION = 1

CACHE_ENV = "EYECHART_CACHE_DIR"

KINDS = ("accepted", "refused", "format", "colour", "document", "size", "large", "security")
# The image modes of CONTRACT.md (clause images.modes): every server MUST accept these fixtures and SHOULD
# accept the others. The suite checks each one; the faulty targets that break them name the same lists.
MUST_MODES = (
    "jpeg-rgb",
    "jpeg-gray",
    "png-palette",
    "png-rgba",
    "webp-lossy",
    "webp-lossless",
    "jpeg-exif-rotated",
    "size-1x1",
    "size-27x300",
)
SHOULD_MODES = ("jpeg-cmyk", "png-16bit", "jpeg-progressive")

MEDIA_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
    "avif": "image/avif",
    "svg": "image/svg+xml",
    "html": "text/html",
    "text": "text/plain",
    "empty": "application/octet-stream",
}
_EXTENSIONS = {"jpeg": "jpg", "text": "txt", "tiff": "tif", "empty": "bin"}


class UnknownFixtureError(LookupError):
    """A fixture name or kind that the catalogue does not have."""

    def __str__(self) -> str:  # LookupError would show the message quoted
        return str(self.args[0]) if self.args else "unknown fixture"


@dataclass(frozen=True)
class Fixture:
    """One generated file and what is known about it.

    ``width``/``height`` are the dimensions stored in the file header (0 for non-images); ``accepted``
    is the default profile's verdict; ``expect`` carries known facts (``colours``, ``transcript``,
    ``display_size``, ``reason`` a refusal is expected for, ...).
    """

    name: str
    path: Path
    format: str
    media_type: str
    width: int
    height: int
    size: int
    sha256: str
    accepted: bool
    expect: dict[str, Any] = field(default_factory=dict, hash=False)
    kinds: tuple[str, ...] = ()
    description: str = ""

    def data(self) -> bytes:
        return self.path.read_bytes()

    def data_uri(self, media_type: str | None = None) -> str:
        """The file as a base64 data URI, labelled with ``media_type`` (default: its true type)."""
        return data_uri(self.path, media_type or self.media_type)

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class _Built:
    data: bytes
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class _Recipe:
    name: str
    format: str
    accepted: bool
    kinds: tuple[str, ...]
    build: Callable[[], _Built]
    description: str
    expect: dict[str, Any] = field(default_factory=dict, hash=False)


# --------------------------------------------------------------------------------------------------
# Sniffing and data URIs


def data_uri(data: bytes | Path, media_type: str | None = None) -> str:
    """``data:<type>;base64,<payload>``; without ``media_type`` the type is sniffed from the bytes."""
    raw = data.read_bytes() if isinstance(data, Path) else bytes(data)
    if media_type is None:
        fmt = sniff_format(raw)
        media_type = MEDIA_TYPES.get(fmt, "application/octet-stream") if fmt else "application/octet-stream"
    return wire_data_uri(raw, media_type)


# --------------------------------------------------------------------------------------------------
# Cache


def cache_dir() -> Path:
    """Where generated files go: ``$EYECHART_CACHE_DIR``, else ``fixtures/.cache`` in a checkout, else
    ``~/.cache/eyechart/fixtures`` (``$XDG_CACHE_HOME`` respected)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    root = bundled.root()
    if root.name != "_bundled":
        local = bundled.fixtures_dir() / ".cache"
        try:
            local.mkdir(parents=True, exist_ok=True)
            if os.access(local, os.W_OK):
                return local
        except OSError:
            pass
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "eyechart" / "fixtures"


def _recipe_key(*parts: object) -> str:
    text = "|".join(str(p) for p in (RECIPES_VERSION, PIL.__version__, *parts))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file and rename, so parallel workers never read half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------------
# Building blocks


def _encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


@functools.cache
def _scene() -> Image.Image:
    """The picture behind the format fixtures: a gradient sky, a green field and an orange sun."""
    w, h = 320, 240
    sky = Image.linear_gradient("L").resize((w, h))
    img = Image.merge("RGB", (sky.point(lambda v: 40 + v // 4), sky.point(lambda v: 90 + v // 3), sky))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 160, w, h), fill=(40, 150, 60))
    draw.ellipse((200, 30, 280, 110), fill=(250, 150, 20))
    draw.rectangle((30, 110, 110, 170), fill=(160, 30, 40))
    return img


def _png(img: Image.Image) -> bytes:
    return _encode(img, "PNG", compress_level=9)


def _jpeg(img: Image.Image, **params: Any) -> bytes:
    return _encode(img, "JPEG", quality=90, **params)


def _built(img: Image.Image, data: bytes) -> _Built:
    return _Built(data, img.width, img.height)


def png_chunk(ctype: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload))


def _flat_png(width: int, height: int, *, colour_type: int, bit_depth: int, plte: bytes = b"") -> bytes:
    """A hand-made PNG of one flat value, streamed through zlib so that even 20000x20000 stays fast and
    tiny (a few hundred KB at most) without ever holding the pixels."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    row = b"\x00" + bytes((width * channels * bit_depth + 7) // 8)
    rows_per_block = max(1, (8 << 20) // len(row))
    comp = zlib.compressobj(9)
    parts: list[bytes] = []
    block = row * rows_per_block
    left = height
    while left > 0:
        n = min(left, rows_per_block)
        parts.append(comp.compress(block if n == rows_per_block else row * n))
        left -= n
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    chunks = [b"\x89PNG\r\n\x1a\n", png_chunk(b"IHDR", ihdr)]
    if plte:
        chunks.append(png_chunk(b"PLTE", plte))
    chunks += [png_chunk(b"IDAT", b"".join(parts)), png_chunk(b"IEND", b"")]
    return b"".join(chunks)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled font (>= 10.1 with FreeType): identical on every machine, no system fonts needed.
    return ImageFont.load_default(size=size)


def _document(lines: list[str], width: int, font_size: int = 48) -> _Built:
    """Large black text on white; words drawn two spaces apart so OCR keeps them apart (the transcript
    has single spaces: compare ignoring whitespace runs)."""
    font = _font(font_size)
    line_h = int(font_size * 1.6)
    height = 2 * 48 + line_h * len(lines)
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((48, 48 + i * line_h), line.replace(" ", "  "), fill="black", font=font)
    return _built(img, _png(img))


INVOICE_LINES = [
    "INVOICE INV-20931",
    "DATE 2024-03-14",
    "WIDGETS 2 X 120.00",
    "SERVICE 242.50",
    "TOTAL 482.50",
]
RECEIPT_LINES = [
    "RECEIPT RCPT-5527",
    "COFFEE 4.50",
    "BAGEL 3.25",
    "TOTAL 7.75",
    "THANK YOU",
]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 160, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
}


def _exif_rotated() -> _Built:
    # Displayed portrait 200x300: red top half, blue bottom half. Stored rotated 90° counter-clockwise
    # (landscape 300x200) with EXIF orientation 6 ("rotate 90° clockwise to display").
    display = Image.new("RGB", (200, 300), COLOURS["blue"])
    ImageDraw.Draw(display).rectangle((0, 0, 199, 149), fill=COLOURS["red"])
    stored = display.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return _built(stored, _jpeg(stored, exif=exif.tobytes()))


def _png16() -> _Built:
    data = b"".join(v.to_bytes(2, "little") for v in range(0, 65536))
    img = Image.frombytes("I;16", (256, 256), data)
    return _built(img, _png(img))


def _truncated_jpeg() -> _Built:
    img = _scene()
    whole = _jpeg(img)
    return _Built(whole[: len(whole) * 3 // 5], img.width, img.height)


def _palette_png() -> _Built:
    img = _scene().quantize(colors=16, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    return _built(img, _png(img))


def _rgba_png() -> _Built:
    img = _scene().convert("RGBA")
    alpha = Image.linear_gradient("L").rotate(90).resize(img.size)
    img.putalpha(alpha)
    return _built(img, _png(img))


def _solid(colour: str, size: tuple[int, int] = (256, 256)) -> _Built:
    img = Image.new("RGB", size, COLOURS[colour])
    return _built(img, _png(img))


_SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256" viewBox="0 0 256 256">'
    b'<rect width="256" height="256" fill="#ff0000"/></svg>\n'
)
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Not an image</title></head>"
    b"<body><h1>404 - this is a web page, not an image</h1></body></html>\n"
)
_TEXT = b"This is plain text, not an image.\n"

BOMB_SIDE = 20_000
LARGE_SIDE = 10_000


def _recipes() -> dict[str, _Recipe]:
    scene = _scene
    rs: list[_Recipe] = [
        # accepted formats and modes
        _Recipe(
            "jpeg-rgb",
            "jpeg",
            True,
            ("accepted", "format"),
            lambda: _built(scene(), _jpeg(scene())),
            "baseline JPEG, RGB",
            {"mode": "RGB"},
        ),
        _Recipe(
            "jpeg-gray",
            "jpeg",
            True,
            ("accepted", "format"),
            lambda: _built(scene(), _jpeg(scene().convert("L"))),
            "baseline JPEG, grayscale",
            {"mode": "L"},
        ),
        _Recipe(
            "jpeg-cmyk",
            "jpeg",
            True,
            ("accepted", "format"),
            lambda: _built(scene(), _jpeg(scene().convert("CMYK"))),
            "JPEG in CMYK (Adobe marker)",
            {"mode": "CMYK"},
        ),
        _Recipe(
            "jpeg-progressive",
            "jpeg",
            True,
            ("accepted", "format"),
            lambda: _built(scene(), _jpeg(scene(), progressive=True)),
            "progressive JPEG",
            {"mode": "RGB", "progressive": True},
        ),
        _Recipe(
            "jpeg-exif-rotated",
            "jpeg",
            True,
            ("accepted", "format"),
            _exif_rotated,
            "JPEG stored landscape 300x200 with EXIF orientation 6: displayed portrait 200x300, red on top",
            {
                "mode": "RGB",
                "orientation": 6,
                "stored_size": [300, 200],
                "display_size": [200, 300],
                "display_top_colour": "red",
                "colours": ["red", "blue"],
            },
        ),
        _Recipe(
            "png-rgb",
            "png",
            True,
            ("accepted", "format"),
            lambda: _built(scene(), _png(scene())),
            "PNG, 8-bit RGB",
            {"mode": "RGB"},
        ),
        _Recipe(
            "png-rgba",
            "png",
            True,
            ("accepted", "format"),
            _rgba_png,
            "PNG, RGBA with an alpha ramp",
            {"mode": "RGBA"},
        ),
        _Recipe(
            "png-palette",
            "png",
            True,
            ("accepted", "format"),
            _palette_png,
            "PNG, 16-colour palette",
            {"mode": "P"},
        ),
        _Recipe(
            "png-16bit",
            "png",
            True,
            ("accepted", "format"),
            _png16,
            "PNG, 16-bit grayscale ramp",
            {"mode": "I;16", "bit_depth": 16},
        ),
        _Recipe(
            "webp-lossy",
            "webp",
            True,
            ("accepted", "format"),
            lambda: _built(scene(), _encode(scene(), "WEBP", quality=80, method=4)),
            "lossy WebP",
            {"lossless": False},
        ),
        _Recipe(
            "webp-lossless",
            "webp",
            True,
            ("accepted", "format"),
            lambda: _built(scene(), _encode(scene(), "WEBP", lossless=True, quality=100, method=4)),
            "lossless WebP",
            {"lossless": True},
        ),
        # documents for OCR probes
        _Recipe(
            "doc-invoice",
            "png",
            True,
            ("accepted", "document"),
            lambda: _document(INVOICE_LINES, 1000),
            "an invoice: black text on white",
            {
                "transcript": "\n".join(INVOICE_LINES),
                "lines": INVOICE_LINES,
                "tokens": ["INV-20931", "TOTAL 482.50"],
            },
        ),
        _Recipe(
            "doc-receipt",
            "png",
            True,
            ("accepted", "document"),
            lambda: _document(RECEIPT_LINES, 800),
            "a receipt: black text on white",
            {
                "transcript": "\n".join(RECEIPT_LINES),
                "lines": RECEIPT_LINES,
                "tokens": ["RCPT-5527", "TOTAL 7.75"],
            },
        ),
        # sizes
        _Recipe(
            "size-1x1",
            "png",
            True,
            ("accepted", "size"),
            lambda: _solid("red", (1, 1)),
            "a single red pixel",
            {"colours": ["red"]},
        ),
        _Recipe(
            "size-27x300",
            "png",
            True,
            ("accepted", "size"),
            lambda: _solid("green", (27, 300)),
            "a thin green strip 27x300",
            {"colours": ["green"]},
        ),
        _Recipe(
            "size-4000x20",
            "png",
            True,
            ("accepted", "size"),
            lambda: _solid("blue", (4000, 20)),
            "an extreme aspect ratio 200:1",
            {"colours": ["blue"]},
        ),
        _Recipe(
            "size-10000x10000",
            "png",
            True,
            ("accepted", "size", "large"),
            lambda: _Built(
                _flat_png(
                    LARGE_SIDE,
                    LARGE_SIDE,
                    colour_type=3,
                    bit_depth=1,
                    plte=bytes(COLOURS["blue"]) + bytes(COLOURS["white"]),
                ),
                LARGE_SIDE,
                LARGE_SIDE,
            ),
            "10000x10000 flat blue (1-bit palette PNG): may be rescaled or refused, never 5xx",
            {"colours": ["blue"], "may_refuse": True},
        ),
        # refused
        _Recipe(
            "gif",
            "gif",
            False,
            ("refused", "format"),
            lambda: _built(scene(), _encode(scene(), "GIF")),
            "GIF (refused by the default profile)",
            {"reason": "format"},
        ),
        _Recipe(
            "bmp",
            "bmp",
            False,
            ("refused", "format"),
            lambda: _built(scene(), _encode(scene(), "BMP")),
            "BMP",
            {"reason": "format"},
        ),
        _Recipe(
            "tiff",
            "tiff",
            False,
            ("refused", "format"),
            lambda: _built(scene(), _encode(scene(), "TIFF")),
            "uncompressed TIFF",
            {"reason": "format"},
        ),
        _Recipe(
            "svg",
            "svg",
            False,
            ("refused", "format"),
            lambda: _Built(_SVG, 256, 256),
            "SVG markup",
            {"reason": "format"},
        ),
        _Recipe(
            "html",
            "html",
            False,
            ("refused", "format"),
            lambda: _Built(HTML_PAGE),
            "an HTML page",
            {"reason": "format"},
        ),
        _Recipe(
            "text",
            "text",
            False,
            ("refused", "format"),
            lambda: _Built(_TEXT),
            "plain text",
            {"reason": "format"},
        ),
        _Recipe(
            "empty", "empty", False, ("refused",), lambda: _Built(b""), "zero bytes", {"reason": "empty"}
        ),
        _Recipe(
            "jpeg-truncated",
            "jpeg",
            False,
            ("refused",),
            _truncated_jpeg,
            "a JPEG cut at 60% of its bytes (header intact, no EOI)",
            {"reason": "truncated"},
        ),
        _Recipe(
            "png-bomb",
            "png",
            False,
            ("refused", "security"),
            lambda: _Built(_flat_png(BOMB_SIDE, BOMB_SIDE, colour_type=0, bit_depth=1), BOMB_SIDE, BOMB_SIDE),
            "decompression bomb: a ~50 KB PNG declaring 20000x20000 pixels",
            {"reason": "decompression-bomb", "declared_pixels": BOMB_SIDE * BOMB_SIDE},
        ),
    ]
    if _has_avif():
        rs.insert(
            rs.index(next(r for r in rs if r.name == "svg")),
            _Recipe(
                "avif",
                "avif",
                False,
                ("refused", "format"),
                lambda: _built(scene(), _encode(scene(), "AVIF", quality=60, speed=8)),
                "AVIF (refused by the default profile)",
                {"reason": "format"},
            ),
        )
    for i, colour in enumerate(COLOURS):
        rs.insert(
            11 + i,
            _Recipe(
                f"colour-{colour}",
                "png",
                True,
                ("accepted", "colour"),
                functools.partial(_solid, colour),
                f"a 256x256 solid {colour} square",
                {"colours": [colour], "rgb": list(COLOURS[colour])},
            ),
        )
    return {r.name: r for r in rs}


def _has_avif() -> bool:
    from PIL import features

    return bool(features.check("avif"))


_RECIPES = _recipes()
_LOCK = threading.Lock()
_MEMO: dict[tuple[str, str], Fixture] = {}


# --------------------------------------------------------------------------------------------------
# Public API


def names(kind: str | None = None) -> list[str]:
    """Fixture names in catalogue order, optionally only one kind (see ``KINDS``)."""
    if kind is None:
        return list(_RECIPES)
    if kind not in KINDS:
        raise UnknownFixtureError(f"unknown fixture kind {kind!r}; kinds are: {', '.join(KINDS)}")
    return [n for n, r in _RECIPES.items() if kind in r.kinds]


def get(name: str, cache: Path | None = None) -> Fixture:
    """The named fixture, generated into the cache on first use (safe across threads and processes)."""
    recipe = _RECIPES.get(name)
    if recipe is None:
        raise UnknownFixtureError(
            f"no fixture named {name!r}; `eyechart fixtures list` shows them ({', '.join(_RECIPES)})"
        )
    folder = cache or cache_dir()
    memo_key = (name, str(folder))
    with _LOCK:
        hit = _MEMO.get(memo_key)
        if hit is not None and hit.path.is_file():
            return hit
    key = _recipe_key(name)
    ext = _EXTENSIONS.get(recipe.format, recipe.format)
    path = folder / f"{name}-{key}.{ext}"
    meta_path = folder / f"{name}-{key}.json"
    meta: dict[str, Any] | None = None
    if path.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("size") != path.stat().st_size:
                meta = None
        except (OSError, ValueError):
            meta = None
    if meta is None:
        built = recipe.build()
        meta = {
            "width": built.width,
            "height": built.height,
            "size": len(built.data),
            "sha256": hashlib.sha256(built.data).hexdigest(),
        }
        _write_atomic(path, built.data)
        _write_atomic(meta_path, json.dumps(meta).encode())
    fx = Fixture(
        name=name,
        path=path,
        format=recipe.format,
        media_type=MEDIA_TYPES[recipe.format],
        width=int(meta["width"]),
        height=int(meta["height"]),
        size=int(meta["size"]),
        sha256=str(meta["sha256"]),
        accepted=recipe.accepted,
        expect=dict(recipe.expect),
        kinds=recipe.kinds,
        description=recipe.description,
    )
    with _LOCK:
        _MEMO[memo_key] = fx
    return fx


def build(selection: Iterable[str] | None = None, cache: Path | None = None) -> list[Fixture]:
    """Generate several fixtures (default: all but the ``large`` ones)."""
    chosen = list(selection) if selection is not None else [n for n in names() if n not in names("large")]
    return [get(n, cache) for n in chosen]


def describe(name: str) -> str:
    recipe = _RECIPES.get(name)
    if recipe is None:
        raise UnknownFixtureError(f"no fixture named {name!r}")
    return recipe.description


def kinds_of(name: str) -> tuple[str, ...]:
    recipe = _RECIPES.get(name)
    if recipe is None:
        raise UnknownFixtureError(f"no fixture named {name!r}")
    return recipe.kinds


# --------------------------------------------------------------------------------------------------
# Exact-size images

_PAD_CHUNK = b"ezPd"  # ancillary, private, safe-to-copy: decoders skip it


@functools.cache
def _exact_base(fmt: str, small: bool) -> bytes:
    if small:
        img = Image.new("RGB", (1, 1), COLOURS["red"])
    else:
        img = Image.new("RGB", (64, 64), COLOURS["red"])
        ImageDraw.Draw(img).rectangle((16, 16, 47, 47), fill=COLOURS["blue"])
    if fmt == "png":
        return _png(img)
    return _jpeg(img)


def exact_size_bytes(n_bytes: int, fmt: str = "png") -> bytes:
    """A valid, decodable image (64x64 or 1x1 pixels) whose encoding is exactly ``n_bytes`` long.

    PNG: a private ancillary chunk before IEND carries the padding. JPEG: COM segments right after SOI.
    Both are skipped by decoders, so the pixel count stays tiny whatever the byte size.
    """
    fmt = _normal_format(fmt)
    if fmt not in ("png", "jpeg"):
        raise ValueError(f"exact-size images are PNG or JPEG, not {fmt!r}")
    if n_bytes < 0:
        raise ValueError("n_bytes must be >= 0")
    for small in (False, True):
        base = _exact_base(fmt, small)
        pad = n_bytes - len(base)
        if pad == 0:
            return base
        if fmt == "png" and pad >= 12:
            iend = len(base) - 12
            chunk = png_chunk(_PAD_CHUNK, bytes(pad - 12))
            return base[:iend] + chunk + base[iend:]
        if fmt == "jpeg" and pad >= 4:
            return base[:2] + _jpeg_padding(pad) + base[2:]
    smallest = len(_exact_base(fmt, True))
    raise ValueError(f"the smallest exact-size {fmt} is {smallest} bytes (asked for {n_bytes})")


def _jpeg_padding(total: int) -> bytes:
    max_segment = 2 + 65535  # marker + length field counts itself
    count = -(-total // max_segment)
    base, extra = divmod(total, count)
    out = []
    for i in range(count):
        seg = base + (1 if i < extra else 0)
        out.append(b"\xff\xfe" + struct.pack(">H", seg - 2) + bytes(seg - 4))
    return b"".join(out)


def exact_size_image(n_bytes: int, fmt: str = "png", cache: Path | None = None) -> Path:
    """``exact_size_bytes`` written to the cache (``exact-<n>-<key>.<ext>``), reused when present."""
    fmt = _normal_format(fmt)
    folder = cache or cache_dir()
    path = folder / f"exact-{n_bytes}-{_recipe_key('exact', fmt, n_bytes)}.{_EXTENSIONS.get(fmt, fmt)}"
    if path.is_file() and path.stat().st_size == n_bytes:
        return path
    _write_atomic(path, exact_size_bytes(n_bytes, fmt))
    return path


# --------------------------------------------------------------------------------------------------
# Synthetic images for load


def _normal_format(fmt: str) -> str:
    fmt = fmt.lower().lstrip(".")
    return {"jpg": "jpeg", "tif": "tiff", "txt": "text"}.get(fmt, fmt)


@functools.lru_cache(maxsize=64)
def synthetic(width: int, height: int, fmt: str = "jpeg", seed: int = 0) -> bytes:
    """A natural-looking picture (smooth colour blobs, a gradient, fine grain) of any size, for load.

    Same arguments, same bytes; different seeds give different pictures of similar encoded size, so a
    server-side cache cannot flatter the numbers. Costs tens of milliseconds at 1080p.
    """
    fmt = _normal_format(fmt)
    if width < 1 or height < 1:
        raise ValueError(f"image size must be at least 1x1, got {width}x{height}")
    if width * height > 100_000_000:
        raise ValueError(f"{width}x{height} is over 100 megapixels; use the size fixtures instead")
    rng = random.Random(seed)
    lw, lh = max(2, width // 48 + 2), max(2, height // 48 + 2)
    blobs = Image.frombytes("RGB", (lw, lh), rng.randbytes(lw * lh * 3)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    ramp = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    img = Image.blend(blobs, ramp, 0.3)
    grain = Image.frombytes("L", (width, height), rng.randbytes(width * height)).convert("RGB")
    img = Image.blend(img, grain, 0.08)
    if fmt == "jpeg":
        return _jpeg(img)
    if fmt == "png":
        return _encode(img, "PNG", compress_level=6)
    if fmt == "webp":
        return _encode(img, "WEBP", quality=80, method=2)
    if fmt in ("gif", "bmp", "tiff"):
        return _encode(img, fmt.upper())
    raise ValueError(f"synthetic images are jpeg, png, webp, gif, bmp or tiff, not {fmt!r}")


# --------------------------------------------------------------------------------------------------
# Manifest


def manifest_path() -> Path:
    return bundled.fixtures_dir() / "manifest.toml"


def render_manifest(fixtures: Iterable[Fixture]) -> str:
    """The committed manifest: facts and sha256 of the small fixtures, for the Pillow version that made
    them (JPEG/WebP/AVIF bytes may legitimately change with the codec libraries a Pillow wheel ships)."""
    lines = [
        "# Generated by `eyechart fixtures build --write-manifest`; do not edit by hand.",
        "# sha256 values hold for the Pillow version below; tests compare them only under that version",
        "# and otherwise check that generation is deterministic (two runs, identical bytes).",
        "",
        "[generator]",
        f"recipes_version = {RECIPES_VERSION}",
        f'pillow = "{PIL.__version__}"',
        "",
    ]
    for fx in fixtures:
        lines += [
            f'[fixtures."{fx.name}"]',
            f"kinds = [{', '.join(json.dumps(k) for k in fx.kinds)}]",
            f'format = "{fx.format}"',
            f'media_type = "{fx.media_type}"',
            f"accepted = {'true' if fx.accepted else 'false'}",
            f"width = {fx.width}",
            f"height = {fx.height}",
            f"size = {fx.size}",
            f'sha256 = "{fx.sha256}"',
            f"description = {json.dumps(fx.description)}",
            "",
        ]
    return "\n".join(lines)


def read_manifest(path: Path | None = None) -> dict[str, Any]:
    import tomllib

    with open(path or manifest_path(), "rb") as fh:
        return tomllib.load(fh)
