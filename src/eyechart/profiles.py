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
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema

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


# Which knob decides each check's expectation (glob on the check id), and why a profile sets it. A
# finding of such a check follows from the profile's choice, not from the contract's core: reports say
# so, naming the knob and its value. The first matching glob wins.
KNOB_OF_CHECK: tuple[tuple[str, str], ...] = (
    ("images.format_accepted.*", "formats"),
    ("images.format_refused.*", "formats"),
    ("limits.size_accept", "size_accept_bytes"),
    ("limits.size_refuse", "size_refuse_bytes"),
    ("limits.too_many_images", "max_images"),
    ("limits.context_length", "context_length"),
    ("images.detail", "detail_supported"),
    ("tokens.formula", "token_rule"),
    ("response.estimated_cost", "estimated_cost"),
    ("response.strict_spec", "strict_spec_severity"),
    ("request.profile_roles", "roles"),
    ("request.option_n", "n_supported"),
    ("request.option_max_tokens", "max_tokens_param"),
    ("request.max_completion_tokens_honoured", "max_tokens_param"),
    ("stream.usage_*", "include_usage_supported"),
    ("stream.incremental", "incremental_streaming"),
    ("capability.*", "capability_severity"),
    ("models.*", "models_endpoint"),
    ("auth.*", "auth_required"),
    ("security.private_address.*", "security_probes"),
    ("security.redirect_to_private.*", "security_probes"),
    ("security.lying_length.*", "security_probes"),
    ("security.slow_drip", "security_probes"),
    ("security.size_cap_streaming", "security_probes"),
)

# What each knob says about a server, for ``--profile`` help and for reports.
KNOB_WHY: dict[str, str] = {
    "formats": "image formats the server documents (others must be refused)",
    "size_accept_bytes": "the image byte size the documents promise to accept",
    "size_refuse_bytes": "the byte limit the documents state (0: none)",
    "max_images": "the documented image count limit",
    "context_length": "the deployment's context length",
    "detail_supported": "whether image_url.detail changes the token count",
    "token_rule": "the model family's image token formula",
    "estimated_cost": "a provider-specific usage field",
    "strict_spec_severity": "how much OpenAI's stricter fields matter",
    "roles": "the message roles the API documents",
    "n_supported": "whether the API returns n choices",
    "max_tokens_param": "the name of the completion cap",
    "include_usage_supported": "whether stream_options.include_usage is implemented",
    "incremental_streaming": "how much token-by-token delivery matters",
    "capability_severity": "how much answer quality matters",
    "models_endpoint": "how much GET /models matters",
    "auth_required": "whether the deployment requires a key",
    "security_probes": "whether image-fetch policy is the server's job",
}


def knob_of(check_id: str) -> str | None:
    """The profile knob that decides what ``check_id`` expects, or None (core contract)."""
    import fnmatch

    base = check_id.split("[", 1)[0]
    return next((knob for pattern, knob in KNOB_OF_CHECK if fnmatch.fnmatchcase(base, pattern)), None)


def attribution(check_id: str, profile: Profile) -> dict[str, Any]:
    """Whether a finding of ``check_id`` is core contract or follows from a knob of ``profile``."""
    knob = knob_of(check_id)
    if knob is None:
        return {"source": "core"}
    value = getattr(profile, knob)
    return {
        "source": "profile",
        "profile": profile.name,
        "knob": knob,
        "value": list(value) if isinstance(value, tuple) else value,
        "why": KNOB_WHY.get(knob, ""),
    }


def knobs_set(name: str) -> dict[str, Any]:
    """The knobs the bundled profile ``name`` sets explicitly (its TOML), for ``--profile`` help."""
    path = bundled.profiles_dir() / f"{name}.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data.pop("name", None)
    return data


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
    validate_knobs(data, str(path))
    validate_knobs({**data, **(overrides or {})}, "--set", only=set(overrides or {}))
    base = Profile(name=data.pop("name"))
    try:
        return base.with_overrides(data).with_overrides(overrides or {})
    except TypeError as exc:  # pragma: no cover - dataclass replace with a wrong type
        raise ProfileError(f"{path}: {exc}") from exc


def schema_path() -> Path:
    """``conformance/schemas/profile.json``: every knob, its type and allowed values, and why."""
    return bundled.schemas_dir() / "profile.json"


def validate_knobs(data: dict[str, Any], source: str, only: set[str] | None = None) -> None:
    """Raise :class:`ProfileError` naming the source (file or ``--set``), the knob and the allowed values
    for the first knob of ``data`` (of ``only``, when given) the profile schema refuses."""
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        key = str(error.absolute_path[0]) if error.absolute_path else None
        if error.validator == "additionalProperties":
            unknown = sorted(set(data) - set(schema["properties"]))
            if only is not None and not set(unknown) & only:
                continue
            known = ", ".join(sorted(schema["properties"]))
            raise ProfileError(
                f"{source}: unknown profile knob {', '.join(map(repr, unknown))}; known: {known}"
            )
        if key is None or (only is not None and key not in only):
            continue
        raise ProfileError(
            f"{source}: profile knob {key} = {_toml(data[key])} is not allowed; "
            f"{key} takes {_allowed(schema['properties'][key], schema)}"
        )


def _allowed(prop: dict[str, Any], schema: dict[str, Any]) -> str:
    """The values a knob takes, in words (from its schema)."""
    if "$ref" in prop:
        prop = {**schema["$defs"][prop["$ref"].rsplit("/", 1)[-1]], **prop}
    if "enum" in prop:
        return "one of " + ", ".join(_toml(v) for v in prop["enum"])
    kind = prop.get("type")
    if kind == "boolean":
        return "true or false"
    if kind == "integer":
        low = prop.get("minimum")
        return "an integer" + (f" ≥ {low}" if low is not None else "")
    if kind == "array":
        return "a list of " + _allowed(prop.get("items", {}), schema).removeprefix("one of ")
    if kind == "string":
        return "a string" + (f" matching {prop['pattern']}" if "pattern" in prop else "")
    return json.dumps(prop)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str | list) else repr(value)


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
