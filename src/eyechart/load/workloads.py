"""Workloads: what a load run sends, read from ``loadtests/workloads/*.toml`` and built once at start.

A workload names its image sources (fixtures by name, a folder, a JSONL file of paths, or synthetic
sizes and formats), how many images go in one request, the transport mix (base64 data URIs, or URLs
served by the fixture server), prompts (caption, OCR, compare, text), a ``max_tokens`` distribution,
``stream`` and ``include_usage``. Example::

    name = "captioning-mixed"
    stream = true
    include_usage = true
    images_per_request = { 1 = 3, 2 = 1 }     # weights: 75 % one image, 25 % two
    max_tokens = { 64 = 1, 128 = 1 }          # or a plain integer
    transport = { base64 = 3, url = 1 }       # share of images; URL images are drawn from the
                                              # fixture sources (the fixture server serves those)
    [[images]]
    fixture = "photo-landscape"
    [[images]]
    synthetic = { width = 640, height = 480, format = "jpeg", count = 4 }
    [[prompts]]
    kind = "caption"
    text = "Describe this image in one sentence."

Request bodies are pre-built as bytes by :func:`build_templates` (``variants`` of them, each checked
once against the request schema), so the hot path only picks one and sends it.
"""

from __future__ import annotations

import io
import json
import random
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eyechart import bundled
from eyechart.wire.build import data_uri

PROMPT_KINDS = ("caption", "ocr", "compare", "text")
TRANSPORTS = ("base64", "url")
FORMATS = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif"}
_KNOWN_KEYS = {
    "name",
    "description",
    "stream",
    "include_usage",
    "images_per_request",
    "max_tokens",
    "transport",
    "images",
    "prompts",
    "temperature",
    "variants",
    "seed",
    "system",
    "extra_body",
}
_RESERVED_BODY = {"model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens"}


class WorkloadError(ValueError):
    """A workload file that cannot be used; the message names the file and the key (exit code 2)."""


@dataclass(frozen=True)
class ImageSource:
    kind: str  # "fixture", "folder", "jsonl", "synthetic"
    value: Any


@dataclass(frozen=True)
class Prompt:
    kind: str
    text: str
    weight: float = 1.0


@dataclass(frozen=True)
class Workload:
    name: str
    path: Path
    description: str = ""
    stream: bool = True
    include_usage: bool = True
    images_per_request: dict[int, float] = field(default_factory=lambda: {1: 1.0})
    max_tokens: dict[int, float] = field(default_factory=lambda: {128: 1.0})
    transport: dict[str, float] = field(default_factory=lambda: {"base64": 1.0})
    images: tuple[ImageSource, ...] = ()
    prompts: tuple[Prompt, ...] = ()
    temperature: float | None = 0.0
    variants: int = 32
    seed: int = 0
    system: str | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)  # e.g. vLLM's ignore_eos

    @property
    def text_only(self) -> bool:
        return not self.images or max(self.images_per_request) == 0

    @property
    def uses_url(self) -> bool:
        return not self.text_only and self.transport.get("url", 0) > 0


@dataclass(frozen=True)
class Template:
    """One pre-built request: the body bytes and what it carries (for the record)."""

    case: str
    body: bytes
    stream: bool
    transport: str
    images: int
    pixels: int
    image_bytes: int
    max_tokens: int
    url_images: int = 0


class Deck:
    """The order requests are sent in: the workload's proportions over the run, not a random draw.

    Every cycle sends each template once (so prompts, image counts, caps and transports keep the
    weights the templates were built with, by quota); within a cycle the next template is the one that
    keeps the run's URL-image share closest to the templates' share (ties in a seeded random order),
    so the share sent so far stays within about one image of the weights at any point of the run.
    """

    def __init__(self, templates: list[Template], rng: random.Random) -> None:
        self._templates = templates
        self._rng = rng
        images = sum(t.images for t in templates)
        self._share = sum(t.url_images for t in templates) / images if images else 0.0
        self._left: list[Template] = []
        self.images = 0
        self.url_images = 0

    def next(self) -> Template:
        if not self._left:
            self._left = list(self._templates)
            self._rng.shuffle(self._left)
        if self._share:
            target = self._share
            best = min(
                range(len(self._left)),
                key=lambda i: abs(
                    self.url_images + self._left[i].url_images - target * (self.images + self._left[i].images)
                ),
            )
        else:
            best = len(self._left) - 1
        t = self._left.pop(best)
        self.images += t.images
        self.url_images += t.url_images
        return t


@dataclass
class _Image:
    name: str
    data: bytes
    media_type: str
    width: int
    height: int
    fixture: str | None = None  # set when the fixture server can serve it by name


def available() -> list[str]:
    return sorted(p.stem for p in bundled.workloads_dir().glob("*.toml"))


def resolve_path(name_or_file: str) -> Path:
    path = Path(name_or_file)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise WorkloadError(f"workload file {path} does not exist")
        return path
    candidate = bundled.workloads_dir() / f"{name_or_file}.toml"
    if not candidate.is_file():
        raise WorkloadError(f"no workload {name_or_file!r}; available: {', '.join(available())}")
    return candidate


def load_workload(name_or_file: str) -> Workload:
    """Read and validate a workload by bundled name or file path."""
    path = resolve_path(name_or_file)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise WorkloadError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise WorkloadError(f"{path}: not UTF-8 text: {exc}") from exc
    return parse_workload(data, path)


def parse_workload(data: Mapping[str, Any], path: Path) -> Workload:
    def err(key: str, why: str) -> WorkloadError:
        return WorkloadError(f"{path}: key {key!r}: {why}")

    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise err(unknown[0], f"unknown key; known keys: {', '.join(sorted(_KNOWN_KEYS))}")

    def boolean(key: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            raise err(key, f"must be true or false, got {value!r}")
        return value

    def distribution(key: str, default: dict[int, float], minimum: int) -> dict[int, float]:
        value = data.get(key, default)
        if isinstance(value, int) and not isinstance(value, bool):
            value = {value: 1.0}
        if not isinstance(value, Mapping) or not value:
            raise err(key, "must be an integer or a table of integer = weight, e.g. { 1 = 3, 2 = 1 }")
        out: dict[int, float] = {}
        for raw_k, weight in value.items():
            try:
                k = int(raw_k)
            except ValueError:
                raise err(key, f"{raw_k!r} is not an integer") from None
            if k < minimum:
                raise err(key, f"{k} is below the minimum {minimum}")
            if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
                raise err(key, f"weight of {k} must be a non-negative number, got {weight!r}")
            out[k] = float(weight)
        if sum(out.values()) <= 0:
            raise err(key, "weights sum to zero")
        return out

    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise err("name", "must be a non-empty string")
    ipr = distribution("images_per_request", {1: 1.0}, 0)
    max_tokens = distribution("max_tokens", {128: 1.0}, 1)
    transport_raw = data.get("transport", {"base64": 1.0})
    if isinstance(transport_raw, str):
        transport_raw = {transport_raw: 1.0}
    if not isinstance(transport_raw, Mapping) or not transport_raw:
        raise err("transport", 'must be "base64", "url" or a table like { base64 = 3, url = 1 }')
    transport: dict[str, float] = {}
    for k, w in transport_raw.items():
        if k not in TRANSPORTS:
            raise err("transport", f"{k!r} is not one of {', '.join(TRANSPORTS)}")
        if isinstance(w, bool) or not isinstance(w, int | float) or w < 0:
            raise err("transport", f"weight of {k} must be a non-negative number")
        transport[k] = float(w)
    if sum(transport.values()) <= 0:
        raise err("transport", "weights sum to zero")

    if not isinstance(data.get("images", []), list):
        raise err("images", "must be an array of tables ([[images]])")
    images = tuple(_parse_source(i, s, path, err) for i, s in enumerate(data.get("images", []) or []))
    if max(ipr) > 0 and not images:
        raise err("images", "images_per_request asks for images but no [[images]] source is given")
    if transport.get("url", 0) > 0 and images and not any(s.kind == "fixture" for s in images):
        raise err(
            "transport", 'url needs at least one fixture image (fixture = "name"): only those are served'
        )

    prompts_raw = data.get("prompts")
    if not isinstance(prompts_raw, list) or not prompts_raw:
        raise err("prompts", "give at least one [[prompts]] table with kind and text")
    prompts: list[Prompt] = []
    for i, p in enumerate(prompts_raw):
        key = f"prompts[{i}]"
        if not isinstance(p, Mapping):
            raise err(key, "must be a table")
        kind, text, weight = p.get("kind", "caption"), p.get("text"), p.get("weight", 1.0)
        if kind not in PROMPT_KINDS:
            raise err(f"{key}.kind", f"{kind!r} is not one of {', '.join(PROMPT_KINDS)}")
        if not isinstance(text, str) or not text.strip():
            raise err(f"{key}.text", "must be a non-empty string")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
            raise err(f"{key}.weight", "must be a positive number")
        if kind == "compare" and min(ipr) < 2 and images:
            raise err(f"{key}.kind", "a compare prompt needs images_per_request of at least 2")
        extra = sorted(set(p) - {"kind", "text", "weight"})
        if extra:
            raise err(f"{key}.{extra[0]}", "unknown key; known: kind, text, weight")
        prompts.append(Prompt(kind, text, float(weight)))

    temperature = data.get("temperature", 0.0)
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, int | float)
    ):
        raise err("temperature", "must be a number")
    variants = data.get("variants", 32)
    if isinstance(variants, bool) or not isinstance(variants, int) or not 1 <= variants <= 10_000:
        raise err("variants", "must be an integer from 1 to 10000")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise err("seed", "must be an integer")
    system = data.get("system")
    if system is not None and not isinstance(system, str):
        raise err("system", "must be a string")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise err("description", "must be a string")
    extra_body = data.get("extra_body", {})
    if not isinstance(extra_body, Mapping):
        raise err("extra_body", "must be a table of request fields, e.g. { ignore_eos = true }")
    clash = sorted(set(extra_body) & _RESERVED_BODY)
    if clash:
        raise err(f"extra_body.{clash[0]}", "is set by the workload's own keys; use those")
    return Workload(
        name=name,
        path=path,
        description=description,
        stream=boolean("stream", True),
        include_usage=boolean("include_usage", True),
        images_per_request=ipr,
        max_tokens=max_tokens,
        transport=transport,
        images=images,
        prompts=tuple(prompts),
        temperature=None if temperature is None else float(temperature),
        variants=variants,
        seed=seed,
        system=system,
        extra_body=dict(extra_body),
    )


def _parse_source(i: int, source: Any, path: Path, err: Callable[[str, str], WorkloadError]) -> ImageSource:
    key = f"images[{i}]"
    if not isinstance(source, Mapping) or len(source) != 1:
        raise err(key, "must be a table with exactly one of: fixture, folder, jsonl, synthetic")
    (kind, value), *_ = source.items()
    if kind == "fixture":
        if not isinstance(value, str):
            raise err(f"{key}.fixture", "must be a fixture name")
        return ImageSource("fixture", value)
    if kind in ("folder", "jsonl"):
        if not isinstance(value, str):
            raise err(f"{key}.{kind}", "must be a path")
        p = Path(value).expanduser()
        if not p.is_absolute():
            p = (path.parent / p).resolve()
        if kind == "folder" and not p.is_dir():
            raise err(f"{key}.folder", f"{p} is not a folder")
        if kind == "jsonl" and not p.is_file():
            raise err(f"{key}.jsonl", f"{p} is not a file")
        return ImageSource(kind, p)
    if kind == "synthetic":
        if not isinstance(value, Mapping):
            raise err(f"{key}.synthetic", "must be a table { width, height, format, count }")
        w, h = value.get("width"), value.get("height")
        fmt, count = value.get("format", "jpeg"), value.get("count", 1)
        for k, v in (("width", w), ("height", h), ("count", count)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise err(f"{key}.synthetic.{k}", f"must be a positive integer, got {v!r}")
        assert isinstance(w, int) and isinstance(h, int)
        if w * h > 50_000_000:
            raise err(f"{key}.synthetic", f"{w}x{h} is too many pixels for a load workload")
        if fmt not in FORMATS:
            raise err(f"{key}.synthetic.format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
        return ImageSource("synthetic", {"width": w, "height": h, "format": fmt, "count": count})
    raise err(key, f"unknown image source {kind!r}; use fixture, folder, jsonl or synthetic")


# --- building request bodies -------------------------------------------------------------------


def _sniff(data: bytes, origin: str) -> tuple[str, int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = (img.format or "").lower()
            size = img.size
    except (UnidentifiedImageError, OSError) as exc:
        raise WorkloadError(f"{origin}: not a readable image: {exc}") from exc
    media = FORMATS.get(fmt)
    if media is None:
        raise WorkloadError(f"{origin}: image format {fmt!r} is not one of {', '.join(FORMATS)}")
    return media, size[0], size[1]


def _load_images(workload: Workload) -> list[_Image]:
    from eyechart.images import fixtures

    out: list[_Image] = []
    for source in workload.images:
        if source.kind == "fixture":
            try:
                fx = fixtures.get(source.value)
            except (LookupError, ValueError) as exc:
                raise WorkloadError(
                    f"{workload.path}: key 'images': no fixture {source.value!r} ({exc})"
                ) from exc
            data = Path(fx.path).read_bytes()
            out.append(_Image(source.value, data, fx.media_type, fx.width, fx.height, source.value))
        elif source.kind == "folder":
            files = sorted(p for p in source.value.iterdir() if p.suffix.lower() in _SUFFIXES)
            if not files:
                raise WorkloadError(f"{workload.path}: key 'images': no images in {source.value}")
            for p in files:
                data = p.read_bytes()
                media, w, h = _sniff(data, str(p))
                out.append(_Image(p.name, data, media, w, h))
        elif source.kind == "jsonl":
            for n, line in enumerate(source.value.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    p = Path(entry["path"]).expanduser()
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise WorkloadError(f'{source.value}:{n}: expected {{"path": "..."}} ({exc})') from None
                if not p.is_absolute():
                    p = source.value.parent / p
                if not p.is_file():
                    raise WorkloadError(f"{source.value}:{n}: {p} does not exist")
                data = p.read_bytes()
                media, w, h = _sniff(data, str(p))
                out.append(_Image(p.name, data, media, w, h))
        else:
            spec = source.value
            for k in range(spec["count"]):
                data = fixtures.synthetic(spec["width"], spec["height"], spec["format"], workload.seed + k)
                name = f"synthetic-{spec['width']}x{spec['height']}-{k}.{spec['format']}"
                out.append(_Image(name, data, FORMATS[spec["format"]], spec["width"], spec["height"]))
    return out


_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif"}


def _quota(rng: random.Random, dist: Mapping[Any, float], n: int) -> list[Any]:
    """``n`` values in the proportions of ``dist`` (largest remainder), shuffled.

    Variants are drawn once and then sent uniformly, so random draws would fix a skewed mix for the
    whole run (8 of 32 where the weights say half); quotas keep the run's mix within 1/n of the weights.
    """
    keys = list(dist)
    total = sum(dist[k] for k in keys)
    exact = [dist[k] * n / total for k in keys]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(keys)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    values = [k for k, c in zip(keys, counts, strict=True) for _ in range(c)]
    rng.shuffle(values)
    return values


def build_templates(
    workload: Workload,
    model: str,
    *,
    url_for: Callable[[str], str] | None = None,
    max_tokens_param: str = "max_tokens",
    validate: bool = True,
) -> list[Template]:
    """Pre-build ``workload.variants`` request bodies; each distinct body is schema-checked once.

    ``url_for(fixture_name)`` gives the fixture server's URL of a fixture; without it every image goes
    as a base64 data URI. Raises :class:`WorkloadError` if a body breaks the request schema.
    """
    rng = random.Random(workload.seed)
    pool = [] if workload.text_only else _load_images(workload)
    servable = [img for img in pool if img.fixture is not None]
    encoded: dict[str, str] = {}
    templates: list[Template] = []
    n = workload.variants
    prompts = _quota(rng, {p: p.weight for p in workload.prompts}, n)
    counts = _quota(rng, workload.images_per_request, n)
    caps = _quota(rng, workload.max_tokens, n)
    # the transport is a share of images: one quota over every image the variants carry
    n_images = (
        0
        if not pool
        else sum(
            max(int(c), 2) if p.kind == "compare" else int(c) for p, c in zip(prompts, counts, strict=True)
        )
    )
    transports = iter(_quota(rng, workload.transport, n_images)) if n_images else iter(())
    for prompt, drawn_count, cap in zip(prompts, counts, caps, strict=True):
        count = 0 if not pool else int(drawn_count)
        if prompt.kind == "compare" and pool:
            count = max(count, 2)
        max_tokens = int(cap)
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt.text}]
        pixels = image_bytes = 0
        used: set[str] = set()
        url_images = 0
        for _ in range(count):
            img = rng.choice(pool)
            transport = next(transports)
            if transport == "url" and servable and url_for is not None:
                if img.fixture is None:  # the URL share is a share of images: take a servable one
                    img = rng.choice(servable)
                assert img.fixture is not None
                url = url_for(img.fixture)
                used.add("url")
                url_images += 1
            else:
                if img.name not in encoded:
                    encoded[img.name] = data_uri(img.data, img.media_type)
                url = encoded[img.name]
                used.add("base64")
            content.append({"type": "image_url", "image_url": {"url": url}})
            pixels += img.width * img.height
            image_bytes += len(img.data)
        messages: list[dict[str, Any]] = []
        if workload.system:
            messages.append({"role": "system", "content": workload.system})
        messages.append({"role": "user", "content": content if count else prompt.text})
        body: dict[str, Any] = {"model": model, "messages": messages, max_tokens_param: max_tokens}
        if workload.temperature is not None:
            body["temperature"] = workload.temperature
        body.update(workload.extra_body)
        if workload.stream:
            body["stream"] = True
            if workload.include_usage:
                body["stream_options"] = {"include_usage": True}
        transport_name = "none" if not used else ("mixed" if len(used) > 1 else used.pop())
        templates.append(
            Template(
                case=f"{prompt.kind}-{count}img",
                body=json.dumps(body, separators=(",", ":")).encode(),
                stream=workload.stream,
                transport=transport_name,
                images=count,
                pixels=pixels,
                image_bytes=image_bytes,
                max_tokens=max_tokens,
                url_images=url_images,
            )
        )
    if validate:
        _validate(templates, workload)
    return templates


def _validate(templates: list[Template], workload: Workload) -> None:
    from eyechart.wire import schemas

    seen: set[bytes] = set()
    for t in templates:
        if t.body in seen:
            continue
        seen.add(t.body)
        problems = schemas.problems("request", json.loads(t.body))
        if problems:
            raise WorkloadError(
                f"{workload.path}: a request built from it breaks the request schema: {problems[0]}"
            )
