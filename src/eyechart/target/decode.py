"""Turn image bytes (or a base64 data URI) into a checked, decoded image — or a clean 4xx.

The reference target must never answer a bad image with a 5xx or an invented answer (CONTRACT §5, §7).
Every way an image can be wrong ends here as :class:`ImageRejected`, carrying the HTTP status and a
message safe to show a client (no paths, no tracebacks):

- data URI not base64, invalid base64 characters, empty payload → 400 ``invalid_image_url``
- more than :data:`MAX_IMAGE_BYTES` decoded bytes (20 MiB; exactly the cap is accepted) → 413
  ``image_too_large``
- bytes that are not JPEG, PNG or WebP, judged from the magic bytes whatever the declared mime type
  (GIF, BMP, TIFF, SVG, HTML, text, HEIC, AVIF ...) → 400 ``unsupported_image_format``
- more than 2 × 89,478,485 pixels (a decompression bomb, refused before any pixel is decoded) → 400
  ``image_too_many_pixels``
- truncated or corrupt data (the whole image is decoded with ``.load()``) → 400 ``invalid_image``

Width and height are reported after EXIF orientation, i.e. as ``ImageOps.exif_transpose`` would leave
the image (orientations 5-8 swap the sides); we read the tag rather than transpose the pixels, which
gives the same size without copying a large image. Decoding holds no shared state, so it is safe to
run in worker threads (``asyncio.to_thread``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image

from eyechart.images.formats import DISPLAY, sniff_format

MAX_IMAGE_BYTES = 20_971_520
"""Largest accepted image, in decoded bytes (20 MiB, the limit `eyechart serve` pins)."""

PILLOW_PIXEL_LIMIT = 89_478_485
"""Pillow's own warning threshold; more than twice this many pixels is a decompression bomb."""

MAX_PIXELS = 2 * PILLOW_PIXEL_LIMIT

ACCEPTED_FORMATS = ("jpeg", "png", "webp")

# Set explicitly rather than trusting whatever default the installed Pillow ships: Pillow raises
# DecompressionBombError above twice this value, which is exactly our refusal threshold.
Image.MAX_IMAGE_PIXELS = PILLOW_PIXEL_LIMIT
# Between 1x and 2x that limit Pillow only warns; we accept those sizes on purpose. A process-wide filter
# (not catch_warnings, which is not thread-safe) keeps worker threads from spamming the log.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_OPENERS = {"jpeg": ["JPEG", "MPO"], "png": ["PNG"], "webp": ["WEBP"]}  # Pillow plugins per format
_BASE64_CHARS = re.compile(rb"[A-Za-z0-9+/]*")
_ROTATED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that transpose width and height
_EXIF_ORIENTATION = 0x0112
_PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk type and its (constant) CRC


class ImageRejected(Exception):
    """An image the target refuses, with the HTTP status and OpenAI-style error fields to send back."""

    def __init__(
        self, message: str, *, status: int = 400, code: str = "invalid_image", param: str | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def __repr__(self) -> str:
        return f"ImageRejected(status={self.status}, code={self.code!r}, message={self.message!r})"


@dataclass(frozen=True)
class DecodedImage:
    """A fully decoded, accepted image. ``width``/``height`` are after EXIF orientation."""

    data: bytes
    format: str  # "jpeg" | "png" | "webp"
    width: int
    height: int
    sha256: str

    @property
    def pixels(self) -> int:
        return self.width * self.height


def too_large(size: int, limit: int = MAX_IMAGE_BYTES) -> ImageRejected:
    """The 413 for an image over the byte cap (shared with the URL fetcher)."""
    return ImageRejected(
        f"image is too large: {size:,} bytes exceeds the limit of {limit:,} bytes",
        status=413,
        code="image_too_large",
    )


ACCEPTED_FORMATS = ("jpeg", "png", "webp")


def accepted_format(data: bytes) -> str:
    """The image format from its magic bytes; raise ImageRejected unless JPEG, PNG or WebP."""
    fmt = sniff_format(data)
    if fmt in ACCEPTED_FORMATS:
        return fmt
    what = f"{DISPLAY[fmt]} is not accepted" if fmt else "the bytes are not a recognised image"
    raise ImageRejected(
        f"unsupported image format: {what}; send JPEG, PNG or WebP",
        code="unsupported_image_format",
    )


def decode_bytes(data: bytes) -> DecodedImage:
    """Check and fully decode image bytes; raise ImageRejected with a client-safe message."""
    if not data:
        raise ImageRejected("the image is empty (0 bytes)", code="invalid_image")
    if len(data) > MAX_IMAGE_BYTES:
        raise too_large(len(data))
    fmt = accepted_format(data)
    if fmt == "png" and _PNG_END not in data:
        # Pillow stops once the pixels are inflated, so a PNG cut inside its last chunks would pass.
        raise ImageRejected("the PNG image is truncated: it has no IEND chunk", code="invalid_image")
    width, height = _decode_pixels(data, fmt)
    return DecodedImage(
        data=data, format=fmt, width=width, height=height, sha256=hashlib.sha256(data).hexdigest()
    )


def _decode_pixels(data: bytes, fmt: str) -> tuple[int, int]:
    label = fmt.upper() if fmt != "webp" else "WebP"
    try:
        with Image.open(io.BytesIO(data), formats=_OPENERS[fmt]) as im:
            width, height = im.size
            if width < 1 or height < 1:
                raise ImageRejected(f"the {label} image has no pixels ({width}x{height})")
            if width * height > MAX_PIXELS:
                raise _bomb(width, height)
            orientation = _orientation(im)
            im.load()  # decode every pixel: a truncated or corrupt file fails here, not later
    except ImageRejected:
        raise
    except Image.DecompressionBombError:
        raise _bomb(0, 0) from None
    except MemoryError:
        raise ImageRejected(
            f"the {label} image is too large to decode", code="image_too_many_pixels"
        ) from None
    except Exception:  # Pillow signals corrupt data with many types (OSError, SyntaxError, ValueError ...)
        raise ImageRejected(
            f"the {label} image could not be decoded: it is truncated or corrupt", code="invalid_image"
        ) from None
    if orientation in _ROTATED_ORIENTATIONS:
        width, height = height, width
    return width, height


def _bomb(width: int, height: int) -> ImageRejected:
    size = f" ({width}x{height} = {width * height:,} pixels)" if width else ""
    return ImageRejected(
        f"image has too many pixels{size}: the limit is {MAX_PIXELS:,} pixels",
        code="image_too_many_pixels",
    )


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
        return int(value) if isinstance(value, int) else 1
    except Exception:  # unreadable EXIF is not a reason to refuse the image
        return 1


def decode_data_uri(url: str) -> DecodedImage:
    """Decode ``data:image/<fmt>[;param=...];base64,<payload>``; raise ImageRejected on anything else.

    Tolerated on purpose (clients send them): ``image/jpg``, extra parameters such as ``;charset=utf-8``,
    unpadded payloads, and CR/LF line breaks inside the payload. The declared mime type is not trusted:
    the format is judged from the decoded bytes.
    """
    if not url[:5].lower() == "data:":
        raise ImageRejected(
            "not a data URI: expected data:image/<format>;base64,<payload>", code="invalid_image_url"
        )
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise ImageRejected("malformed data URI: no ',' before the payload", code="invalid_image_url")
    params = [p.strip().lower() for p in header.split(";")]
    media_type = params[0]
    if not media_type.startswith("image/"):
        shown = media_type[:40] or "(none)"
        raise ImageRejected(
            f"data URI media type must be image/<format>, got {shown}", code="invalid_image_url"
        )
    if "base64" not in params[1:]:
        raise ImageRejected(
            "data URI must be base64-encoded (data:image/<format>;base64,...)", code="invalid_image_url"
        )
    return decode_bytes(_strict_b64decode(payload))


def _strict_b64decode(payload: str) -> bytes:
    try:
        raw = payload.encode("ascii")
    except UnicodeEncodeError:
        raise ImageRejected(
            "invalid base64 in data URI: non-ASCII characters", code="invalid_image_url"
        ) from None
    raw = raw.replace(b"\r", b"").replace(b"\n", b"")
    body = raw.rstrip(b"=")
    if len(raw) - len(body) > 2:
        raise ImageRejected("invalid base64 in data URI: too much '=' padding", code="invalid_image_url")
    if not body:
        raise ImageRejected("the data URI has an empty payload", code="invalid_image_url")
    if _BASE64_CHARS.fullmatch(body) is None:
        bad = next(chr(c) for c in body if _BASE64_CHARS.fullmatch(bytes([c])) is None)
        raise ImageRejected(
            f"invalid base64 in data URI: unexpected character {bad!r}", code="invalid_image_url"
        )
    if len(body) % 4 == 1:
        raise ImageRejected("invalid base64 in data URI: truncated payload", code="invalid_image_url")
    decoded_size = len(body) * 3 // 4
    if decoded_size > MAX_IMAGE_BYTES:  # refuse before allocating the decoded copy
        raise too_large(decoded_size)
    try:
        return base64.b64decode(body + b"=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ImageRejected("invalid base64 in data URI", code="invalid_image_url") from None
