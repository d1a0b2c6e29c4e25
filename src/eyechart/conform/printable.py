"""Server text made safe to store and render: nothing a server sends may crash a run or lose its report.

A server's JSON may carry a lone surrogate (``"\\ud800"`` is valid JSON text but no UTF-8 encoder takes
it), NUL and other control characters (XML 1.0 cannot hold them), or bytes that are not UTF-8 at all.
:func:`printable` turns every string of a verdict into text every report format can carry, keeping
what came visible as an escape (``\\ud800``, ``\\x00``) rather than dropping it; :func:`decoded` reads
body bytes the same way (invalid UTF-8 as ``\\xff``).
"""

from __future__ import annotations

import re
from typing import Any

# lone surrogates, C0 controls except tab/newline/carriage return, DEL, and the XML non-characters
_UNSAFE = re.compile("[\ud800-\udfff\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: Any) -> Any:
    """``value`` with every string (keys too, in dicts and lists) made safe; other values unchanged."""
    if isinstance(value, str):
        return _UNSAFE.sub(_escape, value)
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    return value


def decoded(data: bytes) -> str:
    """Body bytes as safe text: UTF-8 where it is, ``\\xNN`` for every byte that is not."""
    return printable(data.decode("utf-8", "backslashreplace"))  # type: ignore[no-any-return]
