"""Token accounting for the reference target: a documented text tokenizer and per-model image rules.

The target has no real model, so token counts must be reproducible by anyone reading this file:

Text rule (:func:`split_tokens`): the text is cut, left to right, into the first matching piece of

1. an optional single space + a run of 1-10 letters (a longer word continues as further pieces),
2. an optional single space + a run of 1-3 digits,
3. an optional single space + one punctuation or symbol character (``_`` included),
4. a run of whitespace not followed by a visible character (so a word keeps its one leading space),
5. any other run of whitespace.

The pieces concatenate back to exactly the input, so a streamed answer split this way rebuilds the
whole answer. ``"Hello, world 2024!"`` → ``["Hello", ",", " world", " 202", "4", "!"]`` (6 tokens).

Image rules (:func:`image_tokens`, CONTRACT §8), each the published preprocessing of a model family:

- ``qwen2-vl``: Qwen2-VL / Qwen2.5-VL ``smart_resize`` (factor 28, min_pixels 3136, max_pixels
  1,003,520): each side rounded to a multiple of 28 (Python's round, halves to even), scaled down
  (floor) or up (ceil) when the area leaves the bounds; tokens = (h/28)·(w/28) + 2 (vision start/end).
- ``llama-3.2-vision``: Mllama's ``get_optimal_tiled_canvas`` over 560 px tiles with up to 4 tiles
  (grids with w·h ≤ 4): the canvas needing the least upscaling, else the least downscaling, ties to
  the smallest area; tokens = 1601 per tile (1600 patches + class token).
- ``llava-1.5``: 576 tokens for any image (336 px CLIP, 24×24 patches).
- ``openai-tiles``: GPT-4o style: fit inside 2048×2048, then scale the shortest side down to 768;
  85 + 170 per 512 px tile; ``detail="low"`` costs 85.
"""

from __future__ import annotations

import math
import re

_PIECE = re.compile(
    r" ?[^\W\d_]{1,10}"  # words (letters of any script), long words split every 10 letters
    r"| ?\d{1,3}"  # numbers in groups of up to three digits
    r"| ?[^\w\s]| ?_"  # one punctuation or symbol character
    r"|\s+(?!\S)|\s+"  # whitespace, leaving one space to lead the next word
)

IMAGE_RULES = ("qwen2-vl", "llama-3.2-vision", "llava-1.5", "openai-tiles")


def split_tokens(text: str) -> list[str]:
    """Cut text into tokens by the rule in the module docstring; ``"".join(...) == text``."""
    return _PIECE.findall(text)


def text_tokens(text: str) -> int:
    """How many tokens the text counts for."""
    return len(split_tokens(text))


def image_tokens(rule: str, width: int, height: int, *, detail: str | None = None) -> int:
    """Prompt tokens one image of ``width``×``height`` (after EXIF orientation) costs under ``rule``."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if rule == "qwen2-vl":
        h, w = qwen_smart_resize(height, width)
        return (h // QWEN_FACTOR) * (w // QWEN_FACTOR) + 2
    if rule == "llama-3.2-vision":
        canvas_h, canvas_w = mllama_optimal_canvas(height, width)
        return (canvas_h // MLLAMA_TILE) * (canvas_w // MLLAMA_TILE) * MLLAMA_TOKENS_PER_TILE
    if rule == "llava-1.5":
        return 576
    if rule == "openai-tiles":
        return openai_tile_tokens(width, height, detail=detail)
    raise ValueError(f"unknown image token rule {rule!r}; known rules: {', '.join(IMAGE_RULES)}")


QWEN_FACTOR = 28
QWEN_MIN_PIXELS = 3136
QWEN_MAX_PIXELS = 1_003_520


def qwen_smart_resize(
    height: int,
    width: int,
    factor: int = QWEN_FACTOR,
    min_pixels: int = QWEN_MIN_PIXELS,
    max_pixels: int = QWEN_MAX_PIXELS,
) -> tuple[int, int]:
    """Qwen2-VL's ``smart_resize``: the (height, width) the model actually sees.

    As in qwen-vl-utils, tiny sides are lifted to one factor rather than refused, so a 1×1 image
    still gets a size; the aspect-ratio limit of 200 is not enforced here (the decoder accepts the image).
    """
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


MLLAMA_TILE = 560
MLLAMA_MAX_TILES = 4
MLLAMA_TOKENS_PER_TILE = 1601


def mllama_optimal_canvas(
    height: int, width: int, max_tiles: int = MLLAMA_MAX_TILES, tile: int = MLLAMA_TILE
) -> tuple[int, int]:
    """Mllama's ``get_optimal_tiled_canvas``: the (height, width) canvas of whole tiles the image fills."""
    canvases = [
        (rows * tile, cols * tile)
        for rows in range(1, max_tiles + 1)
        for cols in range(1, max_tiles + 1)
        if rows * cols <= max_tiles
    ]
    scales = [min(ch / height, cw / width) for ch, cw in canvases]
    upscaling = [s for s in scales if s >= 1]
    selected = min(upscaling) if upscaling else max(scales)
    chosen = [c for c, s in zip(canvases, scales, strict=True) if s == selected]
    return min(chosen, key=lambda c: c[0] * c[1])  # first of equal areas, as numpy's argmin


def openai_tile_tokens(width: int, height: int, *, detail: str | None = None) -> int:
    """GPT-4o-class image cost: 85 base + 170 per 512 px tile; ``detail="low"`` is 85 flat."""
    if detail == "low":
        return 85
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    # Whole pixels before tiling, so float noise (1536.0000001) cannot add a tile.
    tiles = math.ceil(round(w) / 512) * math.ceil(round(h) / 512)
    return 85 + 170 * tiles
