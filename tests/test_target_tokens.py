"""Token accounting of the reference target, pinned to values worked out by hand from each formula."""

from __future__ import annotations

import pytest

from eyechart.target.tokens import (
    IMAGE_RULES,
    image_tokens,
    mllama_optimal_canvas,
    qwen_smart_resize,
    split_tokens,
    text_tokens,
)


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("Hello, world 2024!", ["Hello", ",", " world", " 202", "4", "!"]),
        ("a  b", ["a", " ", " b"]),
        ("internationalization_x", ["internatio", "nalization", "_", "x"]),
        ("  x\n", [" ", " x", "\n"]),
        ("", []),
        ("Ünïcödé wörds", ["Ünïcödé", " wörds"]),
    ],
)
def test_split_tokens_follows_the_documented_rule(text: str, pieces: list[str]) -> None:
    assert split_tokens(text) == pieces
    assert text_tokens(text) == len(pieces)


@pytest.mark.parametrize(
    "text",
    [
        "The quick brown fox jumps over the lazy dog.",
        "Tabs\tand\nnew lines\r\n  and   runs   of spaces  ",
        "symbols: <>&%$#@!~`^*()[]{}|\\/?;:'\" and émoji 🙂🙂 and 12345678901",
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAB4AAAAU",
    ],
)
def test_pieces_rebuild_the_text_exactly(text: str) -> None:
    assert "".join(split_tokens(text)) == text
    assert all(split_tokens(text))


def test_more_text_more_tokens() -> None:
    assert text_tokens("one two three four") > text_tokens("one two")


# Qwen2-VL smart_resize, worked by hand (factor 28, min 3136, max 1,003,520; Python's round):
#  640x480: h 480/28=17.14→17 (476), w 640/28=22.86→23 (644); 476·644=306,544 in bounds → 17·23+2 = 393
#  27x300 (w x h): h 300/28=10.7→11 (308), w 27/28→1 (28); 8,624 ≥ 3136 → 11·1+2 = 13
#  1x1: 28x28=784 < 3136 → beta=√3136=56 → ceil(56/28)=2 per side → 2·2+2 = 6
#  1024x1024: 37·28=1036, 1036²=1,073,296 > max → beta=√(1,048,576/1,003,520)=1.02220;
#             1024/1.0222/28=35.78→35 → 35·35+2 = 1227
#  4000x3000: beta=√(12e6/1,003,520)=3.45805; h 3000/β/28=30.98→30, w 4000/β/28=41.31→41 → 1232
#  70x70: 70/28=2.5 rounds half to even → 2 (56x56 = 3136, exactly min) → 2·2+2 = 6
#  100x100: 100/28=3.57→4 (112) → 4·4+2 = 18
@pytest.mark.parametrize(
    ("w", "h", "tokens"),
    [
        (640, 480, 393),
        (27, 300, 13),
        (1, 1, 6),
        (1024, 1024, 1227),
        (4000, 3000, 1232),
        (70, 70, 6),
        (100, 100, 18),
    ],
)
def test_qwen2_vl(w: int, h: int, tokens: int) -> None:
    assert image_tokens("qwen2-vl", w, h) == tokens


def test_qwen_smart_resize_sides() -> None:
    assert qwen_smart_resize(480, 640) == (476, 644)
    assert qwen_smart_resize(3000, 4000) == (840, 1148)
    h, w = qwen_smart_resize(3000, 4000)
    assert h * w <= 1_003_520 and h % 28 == 0 and w % 28 == 0


# Llama 3.2 Vision (560 px tiles, grids with rows·cols ≤ 4; least upscaling ≥ 1, else least downscaling;
# ties → smallest area); 1601 tokens per tile:
#  560x560 → 1x1 (scale 1.0) → 1601
#  640x480 (w x h): 560x1120 canvas scale min(560/480, 1120/640)=1.1667 is the least upscale → 2 tiles
#  1000x200: 560x1120 → min(2.8, 1.12) = 1.12 → 2 tiles
#  1024x1024: 1120x1120 → 1.09 → 4 tiles
#  4000x3000: nothing upscales; 1120x1120 → min(0.373, 0.28) = 0.28 is the least downscale → 4 tiles
#  300x2000 (tall): 2240x560 canvas → min(2240/2000, 560/300)=1.12 → 4 tiles (4 rows)
#  100x700: upscales are 1120x560 and 1120x1120 at 1.6, 1680x560 at 2.4 → least is 1.6, smaller area → 2 tiles
@pytest.mark.parametrize(
    ("w", "h", "tiles"),
    [
        (560, 560, 1),
        (640, 480, 2),
        (1000, 200, 2),
        (1024, 1024, 4),
        (4000, 3000, 4),
        (300, 2000, 4),
        (100, 700, 2),
    ],
)
def test_llama_3_2_vision(w: int, h: int, tiles: int) -> None:
    assert image_tokens("llama-3.2-vision", w, h) == 1601 * tiles


def test_mllama_canvas_shapes() -> None:
    assert mllama_optimal_canvas(480, 640) == (560, 1120)
    assert mllama_optimal_canvas(2000, 300) == (2240, 560)
    assert mllama_optimal_canvas(700, 100) == (1120, 560)


@pytest.mark.parametrize(("w", "h"), [(1, 1), (336, 336), (4000, 3000)])
def test_llava_is_flat(w: int, h: int) -> None:
    assert image_tokens("llava-1.5", w, h) == 576


# OpenAI tiles: fit in 2048², shortest side down to 768, 85 + 170 per 512 px tile:
#  1024x1024 → 768x768 → 2x2 → 765;  2048x4096 → 1024x2048 → 768x1536 → 2x3 → 1105
#  4000x3000 → 2048x1536 → 1024x768 → 2x2 → 765;  1000x200 → as is → 2x1 → 425;  512x512 → 1 → 255
@pytest.mark.parametrize(
    ("w", "h", "tokens"),
    [
        (1024, 1024, 765),
        (2048, 4096, 1105),
        (4000, 3000, 765),
        (1000, 200, 425),
        (512, 512, 255),
        (513, 512, 425),
    ],
)
def test_openai_tiles(w: int, h: int, tokens: int) -> None:
    assert image_tokens("openai-tiles", w, h) == tokens


def test_openai_detail_low_is_85() -> None:
    assert image_tokens("openai-tiles", 4000, 3000, detail="low") == 85
    assert image_tokens("openai-tiles", 4000, 3000, detail="high") == 765
    assert image_tokens("openai-tiles", 4000, 3000, detail="auto") == 765


def test_unknown_rule_raises() -> None:
    with pytest.raises(ValueError, match="unknown image token rule"):
        image_tokens("gpt-5-vision", 10, 10)


@pytest.mark.parametrize("rule", IMAGE_RULES)
def test_bigger_image_never_fewer_tokens(rule: str) -> None:
    sizes = [(28, 28), (100, 80), (640, 480), (1280, 960), (4000, 3000)]
    counts = [image_tokens(rule, w, h) for w, h in sizes]
    assert counts == sorted(counts)
