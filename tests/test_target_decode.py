"""The reference target's image decoder: what it accepts, and the clean 4xx for everything else."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image, ImageOps

from eyechart.target.decode import (
    MAX_IMAGE_BYTES,
    MAX_PIXELS,
    DecodedImage,
    ImageRejected,
    decode_bytes,
    decode_data_uri,
)


def encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def rejected(fn, *args) -> ImageRejected:  # type: ignore[no-untyped-def]
    with pytest.raises(ImageRejected) as info:
        fn(*args)
    err = info.value
    # Client-safe: no traceback text, no file paths.
    for leak in ("Traceback", ".py", "site-packages", "/work", "/usr/"):
        assert leak not in err.message
    assert err.message and err.code
    return err


PNG = encode(Image.new("RGB", (30, 20), "red"), "PNG")
# A PNG whose base64 needs '=' padding, so the unpadded variants really drop something.
PADDED_PNG = next(
    data for w in range(31, 60) if len(data := encode(Image.new("RGB", (w, 20), "red"), "PNG")) % 3
)


@pytest.mark.parametrize(
    ("image", "fmt", "kw", "expected"),
    [
        (Image.new("RGB", (33, 17), "blue"), "JPEG", {}, "jpeg"),
        (Image.new("L", (16, 16), 128), "JPEG", {}, "jpeg"),
        (Image.new("P", (12, 34), 3), "PNG", {}, "png"),
        (Image.new("RGBA", (5, 7), (0, 0, 0, 0)), "PNG", {}, "png"),
        (Image.new("RGB", (40, 10), "green"), "WEBP", {"quality": 80}, "webp"),
        (Image.new("RGBA", (9, 9), "yellow"), "WEBP", {"lossless": True}, "webp"),
        (Image.new("RGB", (1, 1), "white"), "PNG", {}, "png"),
        (Image.new("RGB", (27, 300), "white"), "JPEG", {}, "jpeg"),
    ],
)
def test_accepts_jpeg_png_webp_modes(image: Image.Image, fmt: str, kw: dict, expected: str) -> None:
    data = encode(image, fmt, **kw)
    decoded = decode_bytes(data)
    assert (decoded.format, decoded.width, decoded.height) == (expected, *image.size)
    assert decoded.data == data
    assert len(decoded.sha256) == 64


def test_same_bytes_same_sha_different_bytes_different_sha() -> None:
    other = encode(Image.new("RGB", (30, 20), "blue"), "PNG")
    assert decode_bytes(PNG).sha256 == decode_data_uri(data_uri(PNG)).sha256
    assert decode_bytes(PNG).sha256 != decode_bytes(other).sha256


@pytest.mark.parametrize(
    "transform",
    [
        lambda b64: "data:image/png;base64," + b64,
        lambda b64: "data:image/jpg;base64," + b64,  # jpg for png bytes: judged by bytes
        lambda b64: "data:image/png;charset=utf-8;base64," + b64,
        lambda b64: "DATA:IMAGE/PNG;BASE64," + b64,
        lambda b64: "data:image/png;base64," + b64.rstrip("="),  # unpadded
        lambda b64: "data:image/png;base64," + "\r\n".join(b64[i : i + 20] for i in range(0, len(b64), 20)),
        lambda b64: "data:image/png;base64," + "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76)),
    ],
)
def test_data_uri_variants_accepted(transform) -> None:  # type: ignore[no-untyped-def]
    b64 = base64.b64encode(PADDED_PNG).decode()
    assert b64.endswith("=")
    decoded = decode_data_uri(transform(b64))
    assert decoded.data == PADDED_PNG and decoded.format == "png"


def test_png_bytes_labelled_jpeg_are_png() -> None:
    assert decode_data_uri(data_uri(PNG, "image/jpeg")).format == "png"


@pytest.mark.parametrize(
    "uri",
    [
        "data:image/png;base64,iVBORw0KGgo*AAAA",  # '*' is not base64
        "data:image/png;base64,iVBORw0K Ggo",  # a space is not tolerated
        "data:image/png;base64,iVBORw0K-_go",  # url-safe alphabet is not the standard one
        "data:image/png;base64,iVBORw0KGgo=A",  # data after padding
        "data:image/png;base64,iVBORw0KG",  # 4n+1 characters cannot be base64
        "data:image/png;base64,iVBORw0KGgo====",  # too much padding
    ],
)
def test_invalid_base64_is_400(uri: str) -> None:
    err = rejected(decode_data_uri, uri)
    assert err.status == 400 and "base64" in err.message


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("data:image/png;base64,", "empty"),
        ("data:image/png;base64,\r\n", "empty"),
        ("data:image/png," + "%89PNG", "base64"),
        ("data:image/png;utf8,abc", "base64"),
        ("data:text/plain;base64," + base64.b64encode(PNG).decode(), "image/"),
        ("data:;base64," + base64.b64encode(PNG).decode(), "image/"),
        ("data:image/png;base64", "malformed"),
        ("https://example.com/x.png", "not a data URI"),
    ],
)
def test_malformed_data_uri_is_400(uri: str, needle: str) -> None:
    err = rejected(decode_data_uri, uri)
    assert err.status == 400
    assert needle in err.message


def _fake(brand: bytes) -> bytes:
    return b"\x00\x00\x00\x1cftyp" + brand + b"\x00\x00\x00\x00" + brand + b"mif1" + b"\x00" * 64


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (encode(Image.new("RGB", (8, 8), "red"), "GIF"), "GIF"),
        (encode(Image.new("RGB", (8, 8), "red"), "BMP"), "BMP"),
        (encode(Image.new("RGB", (8, 8), "red"), "TIFF"), "TIFF"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>', "SVG"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
        (b"<!DOCTYPE html><html><body>not an image</body></html>", "HTML"),
        (b"just some plain text, not an image", None),
        (_fake(b"heic"), "HEIC"),
        (_fake(b"avif"), "AVIF"),
    ],
)
def test_unsupported_formats_are_400_whatever_the_label(data: bytes, name: str | None) -> None:
    for fn, arg in ((decode_bytes, data), (decode_data_uri, data_uri(data, "image/png"))):
        err = rejected(fn, arg)
        assert err.status == 400
        assert err.code == "unsupported_image_format"
        assert "unsupported image format" in err.message
        if name:
            assert name in err.message


def _png_of_size(size: int) -> bytes:
    # A valid PNG followed by padding: decoders ignore bytes after IEND, the size cap must not.
    return PNG + b"\x00" * (size - len(PNG))


def test_size_cap_is_exact_for_bytes_and_data_uris() -> None:
    at_cap = _png_of_size(MAX_IMAGE_BYTES)
    assert decode_bytes(at_cap).format == "png"
    assert decode_data_uri(data_uri(at_cap)).data == at_cap
    over = at_cap + b"\x00"
    for fn, arg in ((decode_bytes, over), (decode_data_uri, data_uri(over))):
        err = rejected(fn, arg)
        assert err.status == 413 and err.code == "image_too_large"
        assert f"{MAX_IMAGE_BYTES:,}" in err.message


def test_unpadded_data_uri_over_cap_is_413() -> None:
    over = _png_of_size(MAX_IMAGE_BYTES + 2)  # a length that base64 pads
    uri = data_uri(over)
    assert uri.endswith("=")
    err = rejected(decode_data_uri, uri.rstrip("="))
    assert err.status == 413


def _wide_png(pixels: int) -> bytes:
    # One row of bilevel pixels: compresses to a few KB yet declares `pixels` pixels.
    return encode(Image.new("1", (pixels, 1)), "PNG")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pixel_cap_boundary() -> None:
    assert MAX_PIXELS == 2 * 89_478_485
    assert decode_bytes(_wide_png(MAX_PIXELS)).width == MAX_PIXELS
    err = rejected(decode_bytes, _wide_png(MAX_PIXELS + 1))
    assert err.status == 400 and err.code == "image_too_many_pixels"


def test_decompression_bomb_refused_and_decoder_keeps_working() -> None:
    bomb = encode(Image.new("1", (20000, 20000)), "PNG")  # small file, 400 M pixels
    assert len(bomb) < 100_000
    err = rejected(decode_data_uri, data_uri(bomb))
    assert err.status == 400 and "too many pixels" in err.message
    assert decode_bytes(PNG).width == 30


@pytest.mark.parametrize(
    "data",
    [
        encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")[:-600],
        encode(Image.effect_noise((64, 64), 50).convert("RGB"), "PNG")[:2000],
        PNG[:-12],  # IEND chunk cut off
        encode(Image.effect_noise((64, 64), 50).convert("RGB"), "WEBP")[:300],
        PNG[:33] + b"\x00" * 200,  # valid header, garbage chunks
        b"\xff\xd8\xff\xe0" + b"\x00" * 100,  # JPEG magic, nothing else
    ],
    ids=["jpeg-truncated", "png-truncated", "png-no-iend", "webp-truncated", "png-garbage", "jpeg-garbage"],
)
def test_truncated_or_corrupt_is_400(data: bytes) -> None:
    err = rejected(decode_bytes, data)
    assert err.status == 400
    assert err.code in ("invalid_image", "unsupported_image_format")


def test_empty_bytes_400() -> None:
    assert rejected(decode_bytes, b"").status == 400


@pytest.mark.parametrize("orientation", [1, 3, 5, 6, 7, 8])
def test_size_is_reported_after_exif_orientation(orientation: int) -> None:
    im = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(im, "JPEG", exif=exif.tobytes())
    decoded = decode_bytes(data)
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert (decoded.width, decoded.height) == upright.size
    assert (decoded.width, decoded.height) == ((20, 40) if orientation >= 5 else (40, 20))


def test_decoding_in_threads_gives_each_image_its_own_result() -> None:
    sizes = [(10 + i, 20 + 2 * i) for i in range(24)]
    blobs = [encode(Image.new("RGB", s, "red"), "PNG" if i % 2 else "JPEG") for i, s in enumerate(sizes)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results: list[DecodedImage] = list(pool.map(decode_bytes, blobs))
    assert [(r.width, r.height) for r in results] == sizes
