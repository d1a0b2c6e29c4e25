"""What the image breaks need to know about the images in a request: where they are, their bytes, format."""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from typing import Any

import httpx
from PIL import Image

from eyechart.images import sniff_format
from faulty_targets.proxy import Exchange

BOMB_SIDE = 100_000
FETCH_LIMIT = 32 * 1024 * 1024  # read at most this much of a URL image (the contract's limit is 20 MiB)


def image_parts(body: Any) -> list[dict[str, Any]]:
    """Every ``image_url`` part of a chat request, in order (the dicts themselves: breaks edit them)."""
    out: list[dict[str, Any]] = []
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return out
    for msg in body["messages"]:
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list):
            out.extend(p for p in content if isinstance(p, dict) and p.get("type") == "image_url")
    return out


def url_of(part: dict[str, Any]) -> str:
    iu = part.get("image_url")
    if isinstance(iu, dict):
        return str(iu.get("url", ""))
    return str(iu or "")


def set_url(part: dict[str, Any], url: str) -> None:
    if isinstance(part.get("image_url"), dict):
        part["image_url"]["url"] = url
    else:
        part["image_url"] = {"url": url}


def remove_parts(body: Any, doomed: list[dict[str, Any]]) -> None:
    """Drop the given image parts; a message left with no parts gets an empty text part."""
    ids = {id(p) for p in doomed}
    for msg in body.get("messages", []):
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list) and any(id(p) in ids for p in content):
            kept = [p for p in content if id(p) not in ids]
            msg["content"] = kept or [{"type": "text", "text": " "}]


def data_uri_parts(url: str) -> tuple[str, str] | None:
    """(header, payload) of a ``data:`` URL, e.g. ("data:image/png;base64", "iVBOR...")."""
    if not url.startswith("data:") or "," not in url:
        return None
    header, payload = url.split(",", 1)
    return header, payload


def decode_data_uri(url: str) -> bytes | None:
    parts = data_uri_parts(url)
    if parts is None:
        return None
    payload = "".join(parts[1].split())
    payload += "=" * (-len(payload) % 4)
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        return None


async def image_bytes(ex: Exchange, url: str, limit: int = FETCH_LIMIT) -> bytes | None:
    """The bytes an image URL stands for (data URI decoded, http(s) fetched with a timeout and a cap)."""
    if url.startswith("data:"):
        return decode_data_uri(url)
    if not url.startswith(("http://", "https://")):
        return None
    try:
        async with ex.client.stream("GET", url, timeout=httpx.Timeout(5.0), follow_redirects=True) as r:
            if r.status_code != 200:
                return None
            got = bytearray()
            async for piece in r.aiter_bytes():
                got += piece
                if len(got) > limit:
                    break
            return bytes(got)
    except httpx.HTTPError:
        return None


def sniff(data: bytes) -> str:
    """The format the bytes are in (eyechart's one magic-byte rule), or "other"."""
    return sniff_format(data) or "other"


def declared_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the image header, without decoding pixels (so bombs are cheap to measure)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(io.BytesIO(data)) as im:
                return im.size
        except Image.DecompressionBombError:
            return (BOMB_SIDE, BOMB_SIDE)  # over twice Pillow's pixel cap: a bomb whatever its exact size
        except Exception:
            return None


def small_png_data_uri() -> str:
    """A valid 32x32 PNG: what a lenient server 'sees' instead of the image it could not read."""
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
