"""Schema verdicts at sampling speed: a value's validity is computed once per *skeleton* and remembered.

A jsonschema validation of one chunk costs hundreds of microseconds; a stream has hundreds of chunks that
differ only in their text. The contract's output schemas only ask of a value its type, whether a string
is empty or one of the schemas' own literals (``const``/``enum``), and the sign of a number. So each
value is reduced to a skeleton keeping exactly that (other strings become one non-empty placeholder,
numbers their sign, bool and int kept apart) and the verdict is cached per skeleton. Sound by
construction: a schema that uses any keyword outside ``_KEYWORDS`` (``pattern``, ``maximum``,
``minLength`` > 1, a numeric ``const``...) is never cached and always validated in full. An invalid value
is always validated in full, so its problems name the real values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from eyechart.profiles import Profile
from eyechart.wire import schemas
from eyechart.wire.schemas import SchemaProblem

_KEYWORDS = frozenset(
    {
        "$schema", "$id", "$ref", "$defs", "$comment", "title", "description", "examples", "default",
        "type", "required", "properties", "additionalProperties", "items", "const", "enum",
        "anyOf", "allOf", "oneOf", "not", "if", "then", "else", "minItems", "maxItems",
        "minLength", "minimum",
    }
)  # fmt: skip
_MAX_ENTRIES = 20_000  # skeletons per schema; a hostile target inventing shapes only costs a full clear
_PLACEHOLDER = "\x00"

_literals: dict[int, frozenset[str] | None] = {}  # id(validator) -> literal strings, None: not cacheable
_verdicts: dict[int, dict[Any, bool]] = {}


def problems(name: str, instance: object, profile: Profile) -> list[SchemaProblem]:
    """``schemas.problems(name, instance, profile)``, remembered per skeleton when the schema allows it."""
    return checker(name, profile)(instance)


def checker(name: str, profile: Profile) -> Callable[[object], list[SchemaProblem]]:
    """``problems`` bound to one schema and profile: look it up once, call it for every chunk."""
    validator = schemas.validator(name, profile)
    key = id(validator)
    if key not in _literals:
        _literals[key] = _cacheable(validator.schema, profile)
        _verdicts[key] = {}
    literals = _literals[key]
    cache = _verdicts[key]

    def check(instance: object) -> list[SchemaProblem]:
        if literals is None:
            return _full(name, instance, profile)
        try:
            skeleton = _skeleton(instance, literals)
        except RecursionError:
            return _full(name, instance, profile)
        if cache.get(skeleton):
            return []
        found = _full(name, instance, profile)
        if len(cache) >= _MAX_ENTRIES:
            cache.clear()
        cache[skeleton] = not found
        return found

    return check


def failures(
    name: str, profile: Profile, instances: Sequence[object], texts: Sequence[str] | None = None
) -> Iterator[tuple[int, list[SchemaProblem]]]:
    """(position, problems) of each failing instance of a sequence, e.g. one stream's chunks.

    With their JSON ``texts``, chunks that differ only in the text of their ``"content"`` are judged
    once per stream: when a text has no backslash, every quote in it delimits a string, so the value
    after the first ``"content":"`` is the raw text up to the next quote, and two texts equal around it
    parse to values that differ in that one string only: the same skeleton when its class is the same.
    """
    check = checker(name, profile)
    literals = _literals[id(schemas.validator(name, profile))]
    seen: dict[tuple[str, str, str], bool] = {}
    for n, instance in enumerate(instances):
        key = _content_key(texts[n], literals) if texts is not None and literals is not None else None
        if key is not None and seen.get(key):
            continue
        found = check(instance)
        if key is not None:
            seen[key] = not found
        if found:
            yield n, found


def _content_key(text: str, literals: frozenset[str]) -> tuple[str, str, str] | None:
    if "\\" in text:
        return None
    i = text.find('"content":"')
    if i < 0:
        return None
    j = text.find('"', i + 11)
    if j < 0:
        return None
    value = text[i + 11 : j]
    kind = value if value in literals else (_PLACEHOLDER if value else "")
    return text[:i], kind, text[j:]


def _full(name: str, instance: object, profile: Profile) -> list[SchemaProblem]:
    try:
        return schemas.problems(name, instance, profile)
    except RecursionError:
        return [SchemaProblem("", "nested too deeply to validate", "")]


def _skeleton(value: Any, literals: frozenset[str]) -> Any:
    t = type(value)
    if t is dict:
        out: list[Any] = ["d"]
        for k, v in value.items():  # leaves inline: this runs for every chunk of every judged stream
            tv = type(v)
            if tv is str:
                out.append((k, v if v in literals else (_PLACEHOLDER if v else "")))
            elif v is None:
                out.append((k, None))
            elif tv is int:
                out.append((k, ("i", (v > 0) - (v < 0))))
            else:
                out.append((k, _skeleton(v, literals)))
        return tuple(out)
    if t is list:
        return ("l", *[_skeleton(v, literals) for v in value])
    if t is str:
        return value if value in literals else (_PLACEHOLDER if value else "")
    if value is None:
        return None
    if t is bool:
        return ("b", value)
    if t is int:
        return ("i", (value > 0) - (value < 0))
    if t is float:
        if math.isfinite(value):
            return ("f", (value > 0) - (value < 0))
        return ("f", repr(value))
    return ("?", repr(value))  # not a JSON value: validated in full once per repr


def _cacheable(root: dict[str, Any], profile: Profile) -> frozenset[str] | None:
    """The literal strings of the schema and everything it references, or None if a keyword is outside
    what a skeleton preserves. The profile's roles are added: they are the one literal a profile rewrites
    in a referenced document."""
    literals: set[str] = set(profile.roles)
    seen: set[tuple[str, str]] = set()

    def walk(node: Any, stem: str) -> bool:
        if isinstance(node, bool):
            return True
        if not isinstance(node, dict):
            return False
        for key, sub in node.items():
            if key not in _KEYWORDS:
                return False
            if (key == "minLength" and sub > 1) or (key == "minimum" and sub != 0):
                return False
            if key in ("const", "enum"):
                for v in sub if key == "enum" else [sub]:
                    if isinstance(v, str):
                        literals.add(v)
                    elif not (v is None or isinstance(v, bool)):
                        return False
            elif key == "$ref":
                target = _resolve(sub, stem)
                if target is None:
                    return False
                if target[:2] not in seen:
                    seen.add(target[:2])
                    if not walk(target[2], target[0]):
                        return False
            elif key in ("properties",):
                if not all(walk(v, stem) for v in sub.values()):
                    return False
            elif key in ("anyOf", "allOf", "oneOf"):
                if not all(walk(v, stem) for v in sub):
                    return False
            elif key in ("items", "not", "if", "then", "else", "additionalProperties") and not walk(
                sub, stem
            ):
                return False
        return True

    return frozenset(literals) if walk(root, root.get("$id", "")) else None


def _resolve(ref: str, stem: str) -> tuple[str, str, Any] | None:
    """``common.json#/$defs/usage``, ``#/$defs/choice`` or ``error.json`` -> (stem, pointer, node)."""
    file, _, pointer = ref.partition("#")
    file = file.rsplit("/", 1)[-1]
    if file:
        stem = file.removesuffix(".json")
    stem = stem.rsplit("/", 1)[-1].removesuffix(".json")
    try:
        node: Any = schemas.schema(stem)
    except KeyError:
        return None
    for part in [p for p in pointer.split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return stem, pointer, node
