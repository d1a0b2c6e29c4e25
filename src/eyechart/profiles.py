"""Conformance profiles: the knobs in which OpenAI-compatible servers legitimately differ.

A profile is a TOML file in ``conformance/profiles/``; every knob marked (profile) in
``conformance/CONTRACT.md`` is a field here, never a constant in a check. ``load_profile(name,
overrides)`` applies per-knob overrides given on the command line as ``knob=value`` (value parsed as
TOML, bare words as strings).

Two knobs describe a deployment rather than an API, so users set them per run with ``--set``:
``context_length`` (vLLM ``--max-model-len``, llama.cpp ``--n_ctx``) and ``auth_required`` (false for a
self-hosted server started without a key: ``auth.*`` then record INFO, not MUST failures).
``size_refuse_bytes = 0`` says the server states no image byte limit (vLLM data URIs, llama.cpp), so
``limits.size_refuse`` is skipped with that reason while ``limits.size_accept`` still runs.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from eyechart import bundled
from eyechart.severity import Severity

TokenRule = Literal["none", "qwen2-vl", "llama-3.2-vision", "llava-1.5", "openai-tiles"]


class ProfileError(ValueError):
    """A profile that cannot be loaded or an override that does not apply (exit code 2)."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    # Where the API lives: an SDK's base_url is the target URL; this is the path a bare host gets.
    base_path: str = "/v1/openai"
    models_endpoint: Severity = "MUST"
    # False: the target runs open (a self-hosted server without --api-key); auth.* are INFO, not MUST
    auth_required: bool = True
    roles: tuple[str, ...] = ("system", "user", "assistant")
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    n_supported: bool = False
    # Images
    formats: tuple[str, ...] = ("jpeg", "png", "webp")
    size_accept_bytes: int = 20_000_000  # an image of up to this many decoded bytes must be accepted
    # one larger than this must be refused (400/413); 0: the server states no byte limit (check skipped)
    size_refuse_bytes: int = 20_971_520
    max_images: int | None = None  # too many images -> 4xx; None: the documents state no count
    detail_supported: bool = False
    context_length: int | None = None
    token_rule: TokenRule = "none"
    # Output
    usage_required: bool = True
    estimated_cost: bool = True
    include_usage_supported: bool = True
    incremental_streaming: Severity = "MUST"
    capability_severity: Severity = "SHOULD"
    strict_spec_severity: Severity = "SHOULD"
    # Security probes of image fetching (conformance/CONTRACT.md): private addresses, redirects, slow
    # drips, lying lengths, unbounded streams. The scheme and decompression-bomb probes always run
    # ("a client mistake is 4xx, never 5xx" is not fetch policy).
    security_probes: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def with_overrides(self, overrides: dict[str, Any]) -> Profile:
        known = {f.name: f for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in known or key in {"name", "extra"}:
                raise ProfileError(f"unknown profile knob {key!r}; known: {', '.join(sorted(known))}")
            changes[key] = tuple(value) if isinstance(value, list) else value
        return dataclasses.replace(self, **changes)


def available() -> list[str]:
    return sorted(p.stem for p in bundled.profiles_dir().glob("*.toml"))


def load_profile(name_or_path: str = "deepinfra", overrides: dict[str, Any] | None = None) -> Profile:
    path = Path(name_or_path)
    if not path.suffix:
        path = bundled.profiles_dir() / f"{name_or_path}.toml"
    if not path.is_file():
        raise ProfileError(f"no profile {name_or_path!r}; available: {', '.join(available())}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: {exc}") from exc
    data.setdefault("name", path.stem)
    base = Profile(name=data.pop("name"))
    try:
        return base.with_overrides(data).with_overrides(overrides or {})
    except TypeError as exc:  # pragma: no cover - dataclass replace with a wrong type
        raise ProfileError(f"{path}: {exc}") from exc


def parse_override(text: str) -> tuple[str, Any]:
    """``knob=value`` with value as TOML (``max_images=4``, ``formats=["png"]``) or a bare string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ProfileError(f"override {text!r} is not knob=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value
