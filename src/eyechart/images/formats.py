"""Image formats judged from magic bytes only: the rule the contract sets for servers.

One home for it, used by the fixtures, the reference target and the test targets alike, so the
harness and the target can never disagree about what a file is.
"""

from __future__ import annotations

# What a user reads in an error message for each format name sniff_format returns.
DISPLAY = {
    "jpeg": "JPEG",
    "png": "PNG",
    "webp": "WebP",
    "gif": "GIF",
    "bmp": "BMP",
    "tiff": "TIFF",
    "avif": "AVIF",
    "heic": "HEIC",
    "isomedia": "an ISO media file",
    "ico": "ICO",
    "pdf": "PDF",
    "html": "HTML",
    "svg": "SVG",
    "xml": "XML",
    "json": "JSON",
}

_HEIC_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heim", b"heis")


def sniff_format(data: bytes) -> str | None:
    """The format of ``data`` by its magic bytes (a key of DISPLAY), or None when unrecognised."""
    head = data[:1024]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "avif"
        return "heic" if brand in _HEIC_BRANDS else "isomedia"
    if head[:4] == b"\x00\x00\x01\x00":
        return "ico"
    if head[:4] == b"%PDF":
        return "pdf"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "html"
    if b"<svg" in text:
        return "svg"
    if text.startswith(b"<"):
        return "xml"
    if text.startswith((b"{", b"[")):
        return "json"
    return None
