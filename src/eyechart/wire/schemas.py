"""The schema registry: the contract's JSON Schemas, specialised per profile, as cached validators.

The files in ``conformance/schemas/`` are the generic contract; a profile rewrites a few knobs (which roles
a request may use, whether ``usage`` and ``usage.estimated_cost`` are required, whether ``n`` may exceed 1)
before the validators are built. ``$ref`` between files resolve through a ``referencing.Registry`` built
from those files only: nothing is ever fetched. Names are file stems: ``request``, ``response``,
``response-strict`` (OpenAI's additions, SHOULD), ``chunk``, ``error``, ``error-strict`` (SHOULD),
``models``, ``common``.

    >>> problems("error", {"detail": "nope"})[0].pointer
    ''

One deliberate tightening over plain JSON Schema: ``"integer"`` does not accept ``1.0``. A server that
writes ``"created": 1694623354.0`` breaks typed clients (Go, Rust), so it is reported.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match, relevance
from jsonschema.protocols import Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from eyechart import bundled
from eyechart.profiles import Profile

BASE_URI = "https://eyechart.invalid/schemas/"
_MESSAGE_LIMIT = 300  # a 28 MB data URI must not end up in a report line


def _is_strict_integer(_checker: object, instance: object) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


_TYPE_CHECKER = Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_strict_integer)
StrictValidator = jsonschema.validators.extend(Draft202012Validator, type_checker=_TYPE_CHECKER)


@dataclass(frozen=True)
class SchemaProblem:
    """One schema violation: where in the instance (JSON pointer), what, and which schema rule."""

    pointer: str
    message: str
    schema_path: str

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


def names() -> list[str]:
    """Every schema name the registry knows (file stems)."""
    return sorted(_documents())


@cache
def _documents() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(bundled.schemas_dir().glob("*.json")):
        docs[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    return docs


def schema(name: str) -> dict[str, Any]:
    """The generic (profile-free) schema document ``name``, as a fresh copy."""
    docs = _documents()
    if name not in docs:
        raise KeyError(f"no schema {name!r}; known: {', '.join(sorted(docs))}")
    return copy.deepcopy(docs[name])


# The knobs that change a schema; validators are cached on these, so profiles that agree share them.
_Knobs = tuple[tuple[str, ...], bool, bool, bool]


def _knobs(profile: Profile | None) -> _Knobs | None:
    if profile is None:
        return None
    return (tuple(profile.roles), profile.usage_required, profile.estimated_cost, profile.n_supported)


def _specialise(docs: dict[str, dict[str, Any]], knobs: _Knobs | None) -> dict[str, dict[str, Any]]:
    if knobs is None:
        return docs
    roles, usage_required, estimated_cost, n_supported = knobs
    docs = copy.deepcopy(docs)
    docs["common"]["$defs"]["role"]["enum"] = list(roles)
    response = docs["response"]
    if usage_required:
        response["required"] = [*response["required"], "usage"]
    if estimated_cost:
        response["properties"]["usage"] = {
            "allOf": [{"$ref": "common.json#/$defs/usage"}, {"required": ["estimated_cost"]}]
        }
    if not n_supported:
        docs["request"]["properties"]["n"]["maximum"] = 1
    return docs


@cache
def _validator(name: str, knobs: _Knobs | None) -> Validator:
    docs = _specialise(_documents(), knobs)
    if name not in docs:
        raise KeyError(f"no schema {name!r}; known: {', '.join(sorted(docs))}")
    registry: Registry[Any] = Registry().with_resources(
        (
            doc.get("$id", BASE_URI + f"{stem}.json"),
            Resource.from_contents(doc, default_specification=DRAFT202012),
        )
        for stem, doc in docs.items()
    )
    validator: Validator = StrictValidator(docs[name], registry=registry)
    return validator


def validator(name: str, profile: Profile | None = None) -> Validator:
    """A cached Draft 2020-12 validator for ``name``, specialised for ``profile`` (None: generic)."""
    return _validator(name, _knobs(profile))


def _pointer(error: ValidationError) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in error.absolute_path)


def _shorten(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def problems(name: str, instance: object, profile: Profile | None = None) -> list[SchemaProblem]:
    """Every violation of schema ``name`` by ``instance``, the most relevant first; ``[]`` if valid.

    For ``anyOf``/``oneOf``/``if`` failures the deepest, most specific cause is reported, so the pointer
    names the offending value (``/messages/0/content/1/image_url``), not the whole message.
    """
    checker = validator(name, profile)
    if checker.is_valid(instance):
        return []
    found: list[SchemaProblem] = []
    seen: set[tuple[str, str]] = set()
    for error in sorted(checker.iter_errors(instance), key=relevance, reverse=True):
        best = best_match([error]) or error
        problem = SchemaProblem(
            pointer=_pointer(best),
            message=_shorten(best.message),
            schema_path="/".join(str(part) for part in best.absolute_schema_path),
        )
        if (problem.pointer, problem.message) not in seen:
            seen.add((problem.pointer, problem.message))
            found.append(problem)
    return found
