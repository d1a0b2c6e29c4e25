"""Image fixtures: what decodes, what is refused, exact sizes, determinism, cache and the CLI."""

from __future__ import annotations

import base64
import struct
import warnings
from pathlib import Path

import PIL
import pytest
from PIL import Image, ImageOps, UnidentifiedImageError

from eyechart import cli
from eyechart.images import fixtures
from eyechart.images.fixtures import (
    UnknownFixtureError,
    data_uri,
    exact_size_bytes,
    exact_size_image,
    get,
    names,
    sniff_format,
    synthetic,
)

PIL_FORMAT = {
    "jpeg": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "gif": "GIF",
    "bmp": "BMP",
    "tiff": "TIFF",
    "avif": "AVIF",
}
PILLOW_PIXEL_CAP = 89_478_485


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fixture-cache")


SMALL = [n for n in names() if n not in names("large")]


@pytest.mark.parametrize("name", [n for n in names("accepted") if n not in names("large")])
def test_accepted_fixture_decodes_as_declared(name: str, cache: Path) -> None:
    fx = get(name, cache)
    data = fx.path.read_bytes()
    assert len(data) == fx.size
    assert sniff_format(data) == fx.format
    with Image.open(fx.path) as img:
        img.load()
        assert img.format == PIL_FORMAT[fx.format]
        assert img.size == (fx.width, fx.height)
        if "mode" in fx.expect:
            assert img.mode == fx.expect["mode"]
    assert fx.accepted


def test_fixture_media_types_match_formats(cache: Path) -> None:
    for name in SMALL:
        fx = get(name, cache)
        assert fx.media_type == fixtures.MEDIA_TYPES[fx.format]


@pytest.mark.parametrize("name", ["gif", "bmp", "tiff", "avif"])
def test_refused_raster_formats_are_real_images_of_that_format(name: str, cache: Path) -> None:
    if name not in names():
        pytest.skip("this Pillow has no AVIF encoder")
    fx = get(name, cache)
    assert not fx.accepted and fx.expect["reason"] == "format"
    assert sniff_format(fx.data()) == name
    with Image.open(fx.path) as img:
        img.load()
        assert img.format == PIL_FORMAT[name]


@pytest.mark.parametrize("name", ["svg", "html", "text", "empty"])
def test_non_images_do_not_decode(name: str, cache: Path) -> None:
    fx = get(name, cache)
    assert not fx.accepted
    with pytest.raises(UnidentifiedImageError):
        Image.open(fx.path)
    assert sniff_format(fx.data()) == {"svg": "svg", "html": "html"}.get(name)


def test_truncated_jpeg_opens_but_fails_to_decode(cache: Path) -> None:
    fx = get("jpeg-truncated", cache)
    whole = get("jpeg-rgb", cache)
    assert sniff_format(fx.data()) == "jpeg" and fx.size < whole.size
    assert not fx.data().endswith(b"\xff\xd9")
    with Image.open(fx.path) as img, pytest.raises(OSError, match="truncated"):
        img.load()


def test_bomb_is_small_but_declares_over_twice_the_pixel_cap(cache: Path) -> None:
    fx = get("png-bomb", cache)
    data = fx.data()
    assert fx.size < 300_000
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width * height > 2 * PILLOW_PIXEL_CAP
    assert (width, height) == (fx.width, fx.height) and fx.expect["declared_pixels"] == width * height
    with pytest.raises(Image.DecompressionBombError):
        Image.open(fx.path)


def test_large_fixture_is_cheap_and_really_10000_square(cache: Path) -> None:
    fx = get("size-10000x10000", cache)
    assert fx.size < 100_000 and fx.pixels == 100_000_000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(fx.path) as img:
            assert img.size == (10_000, 10_000)
            img.load()
            assert img.convert("RGB").getpixel((9_999, 5_000)) == fixtures.COLOURS["blue"]


@pytest.mark.parametrize("name", names("colour"))
def test_colour_squares_are_solid(name: str, cache: Path) -> None:
    fx = get(name, cache)
    with Image.open(fx.path) as img:
        rgb = img.convert("RGB")
        assert rgb.size == (256, 256)
        assert rgb.getcolors() == [(256 * 256, tuple(fx.expect["rgb"]))]
    assert name == f"colour-{fx.expect['colours'][0]}"


def test_exif_rotated_jpeg_stores_landscape_and_displays_portrait_red_on_top(cache: Path) -> None:
    fx = get("jpeg-exif-rotated", cache)
    with Image.open(fx.path) as img:
        assert list(img.size) == fx.expect["stored_size"] == [300, 200]
        assert img.getexif()[0x0112] == 6
        shown = ImageOps.exif_transpose(img).convert("RGB")
    assert list(shown.size) == fx.expect["display_size"] == [200, 300]
    top, bottom = shown.getpixel((100, 20)), shown.getpixel((100, 280))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60  # red
    assert bottom[2] > 200 and bottom[0] < 60  # blue


def test_progressive_and_16bit_are_what_they_claim(cache: Path) -> None:
    with Image.open(get("jpeg-progressive", cache).path) as img:
        assert img.info.get("progressive") or img.info.get("progression")
    with Image.open(get("jpeg-rgb", cache).path) as img:
        assert not img.info.get("progressive")
    data = get("png-16bit", cache).data()
    assert data[24] == 16  # IHDR bit depth
    with Image.open(get("webp-lossless", cache).path) as img:
        assert img.convert("RGB").tobytes() == fixtures._scene().tobytes()


@pytest.mark.parametrize("name", names("document"))
def test_documents_have_known_tokens_and_dark_text(name: str, cache: Path) -> None:
    fx = get(name, cache)
    for token in fx.expect["tokens"]:
        assert token in fx.expect["transcript"]
    with Image.open(fx.path) as img:
        gray = img.convert("L")
        dark = sum(count for count, value in gray.getcolors(256) or [] if value < 100)
        assert 0.01 < dark / (gray.width * gray.height) < 0.3


def test_invoice_is_readable_by_real_ocr(cache: Path) -> None:
    rapidocr = pytest.importorskip("rapidocr_onnxruntime")
    fx = get("doc-invoice", cache)
    result, _ = rapidocr.RapidOCR()(fx.data())
    text = "".join(line[1] for line in result or []).replace(" ", "")
    for token in fx.expect["tokens"]:
        assert token.replace(" ", "") in text


EXACT_SIZES = [19_999_999, 20_000_000, 20_000_001, 20_971_519, 20_971_520, 20_971_521]


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_exact_size_images_are_exact_and_decodable(fmt: str) -> None:
    for n in [*EXACT_SIZES, 5_000, 1_000]:
        data = exact_size_bytes(n, fmt)
        assert len(data) == n
        assert sniff_format(data) == fmt
    for n in (EXACT_SIZES[0], 1_000):
        import io

        with Image.open(io.BytesIO(exact_size_bytes(n, fmt))) as img:
            img.load()
            assert img.width * img.height <= 64 * 64


def test_exact_size_image_writes_a_file_of_that_size(tmp_path: Path) -> None:
    path = exact_size_image(20_971_521, "png", cache=tmp_path)
    assert path.stat().st_size == 20_971_521
    with Image.open(path) as img:
        img.load()
        assert img.size == (64, 64)
    smallest = len(fixtures._exact_base("png", True))
    assert exact_size_image(smallest, "png", cache=tmp_path).stat().st_size == smallest
    with pytest.raises(ValueError, match="smallest"):
        exact_size_bytes(10, "png")
    with pytest.raises(ValueError, match="PNG or JPEG"):
        exact_size_bytes(1000, "gif")


def test_generation_is_deterministic_across_fresh_caches(tmp_path: Path) -> None:
    first = {n: get(n, tmp_path / "a") for n in SMALL}
    second = {n: get(n, tmp_path / "b") for n in SMALL}
    for n in SMALL:
        assert first[n].path != second[n].path
        assert first[n].sha256 == second[n].sha256, n
        assert first[n].path.read_bytes() == second[n].path.read_bytes(), n


def test_manifest_matches_generated_fixtures(cache: Path) -> None:
    manifest = fixtures.read_manifest()
    recorded = manifest["fixtures"]
    assert set(recorded) == set(SMALL)
    same_pillow = manifest["generator"]["pillow"] == PIL.__version__
    for name in SMALL:
        fx = get(name, cache)
        row = recorded[name]
        assert (row["format"], row["width"], row["height"], row["accepted"]) == (
            fx.format,
            fx.width,
            fx.height,
            fx.accepted,
        )
        if same_pillow:
            assert row["sha256"] == fx.sha256, (
                f"{name}: regenerate with `eyechart fixtures build --write-manifest`"
            )


def test_cache_is_reused_and_keyed_by_recipe(tmp_path: Path) -> None:
    fx = get("colour-red", tmp_path)
    assert fx.path.parent == tmp_path and fx.path.name.startswith("colour-red-")
    stamp = fx.path.stat().st_mtime_ns
    fixtures._MEMO.clear()
    again = get("colour-red", tmp_path)
    assert again.path == fx.path and again.path.stat().st_mtime_ns == stamp
    fx.path.unlink()  # a deleted file is regenerated, not served from memory
    assert get("colour-red", tmp_path).path.read_bytes()


def test_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EYECHART_CACHE_DIR", str(tmp_path / "env-cache"))
    assert fixtures.cache_dir() == tmp_path / "env-cache"
    assert get("size-1x1").path.parent == tmp_path / "env-cache"


def test_unknown_names_and_kinds_are_clear_errors() -> None:
    with pytest.raises(UnknownFixtureError, match="no fixture named 'nope'"):
        get("nope")
    with pytest.raises(UnknownFixtureError, match="kinds are"):
        names("pictures")


def test_kinds_partition_the_catalogue() -> None:
    assert set(names("accepted")).isdisjoint(names("refused"))
    assert set(names("accepted")) | set(names("refused")) == set(names())
    assert {"colour-red", "colour-green", "colour-blue", "colour-yellow"} <= set(names("colour"))
    assert {"size-1x1", "size-27x300", "size-4000x20", "size-10000x10000"} <= set(names("size"))


def test_data_uri_sniffs_or_takes_the_label(cache: Path) -> None:
    fx = get("png-rgb", cache)
    uri = data_uri(fx.path)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == fx.data()
    assert data_uri(fx.data(), "image/jpeg").startswith("data:image/jpeg;base64,")
    assert fx.data_uri() == uri
    assert data_uri(b"hello").startswith("data:application/octet-stream;base64,")


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_synthetic_images_are_deterministic_and_sized(fmt: str) -> None:
    import io

    a = synthetic(640, 360, fmt, 1)
    assert synthetic(640, 360, fmt, 1) == a
    synthetic.cache_clear()
    assert synthetic(640, 360, fmt, 1) == a  # not just the memo
    assert synthetic(640, 360, fmt, 2) != a
    assert sniff_format(a) == fmt
    with Image.open(io.BytesIO(a)) as img:
        assert img.size == (640, 360)
        img.load()
        # natural-looking: many distinct colours, not a flat fill
        assert len(img.convert("RGB").getcolors(1_000_000) or []) > 1000
    with pytest.raises(ValueError):
        synthetic(0, 10, fmt, 0)


def test_cli_list_and_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EYECHART_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("COLUMNS", "200")
    assert cli.main(["fixtures", "list", "--kind", "colour"]) == 0
    out = capsys.readouterr().out
    assert "colour-red" in out and "png-bomb" not in out
    assert cli.main(["fixtures", "build", "--cache-dir", str(tmp_path / "built")]) == 0
    built = {p.name.rsplit("-", 1)[0] for p in (tmp_path / "built").glob("*.json")}
    assert built == set(SMALL)
    assert cli.main(["fixtures"]) == 2
