"""The contract's JSON Schemas: each MUST clause rejects what it must, each legal variant passes.

Not expressible in JSON Schema, so left to the checks (and not tested here): total_tokens = prompt_tokens +
completion_tokens, created near now, completion_tokens within the cap, the same id/model across chunks
(eyechart.wire.sse), finish_reason matching the stop condition.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from eyechart.profiles import load_profile
from eyechart.wire.schemas import SchemaProblem, names, problems, schema, validator

DEFAULT = load_profile("deepinfra")
OPENAI = load_profile("openai")
VLLM = load_profile("vllm")


def _request() -> dict[str, Any]:
    return {
        "model": "meta-llama/Llama-3.2-11B-Vision-Instruct",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "text", "text": "What is in this image?"},
                ],
            },
        ],
        "max_tokens": 16,
    }


def _response() -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "meta-llama/Llama-3.2-11B-Vision-Instruct",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "A cat."}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13, "estimated_cost": 1.2e-6},
    }


def _chunk() -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "A"}, "finish_reason": None}],
    }


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of doc with the value at a /-separated path replaced (or deleted when value is ...)."""
    doc = copy.deepcopy(doc)
    *parents, last = path.strip("/").split("/")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return doc


def _pointers(found: list[SchemaProblem]) -> list[str]:
    return [p.pointer for p in found]


def test_all_schemas_are_registered_and_valid_draft_2020_12() -> None:
    assert {"request", "response", "response-strict", "chunk", "error", "error-strict", "models"} <= set(
        names()
    )
    for name in names():
        doc = schema(name)
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        validator(name).check_schema(doc)
    with pytest.raises(KeyError):
        schema("nope")


# --- request (section 2) -------------------------------------------------------------------------


def test_request_legal_variants_pass() -> None:
    assert problems("request", _request(), DEFAULT) == []
    legal = [
        _set(_request(), "/messages/1/content", "plain text question"),
        _set(_request(), "/messages/1/content/0/image_url/url", "https://example.com/cat.jpg"),
        _set(_request(), "/messages/1/content/0/image_url/url", "http://127.0.0.1:8000/cat.webp"),
        _set(_request(), "/messages/1/content/0/image_url/url", "data:image/jpg;base64,/9j/4AAQ"),
        _set(_request(), "/messages/1/content/0/image_url/url", "data:image/png;charset=utf-8;base64,iVBORw"),
        _set(_request(), "/messages/1/content/0/image_url/url", "data:image/png;base64,iVBO\nRw0K"),
        _set(_request(), "/messages/1/content/0/image_url/detail", "low"),
        _set(_request(), "/stop", "\n\n"),
        _set(_request(), "/stop", ["a", "b", "c", "d"]),
        _set(_request(), "/x_vendor_option", {"anything": True}),
        _set(_request(), "/messages/0/content", [{"type": "text", "text": "Be brief."}]),
        _set(_request(), "/stream_options", {"include_usage": True}),
    ]
    assistant_turns = [None, "", "earlier answer", [{"type": "text", "text": "earlier"}]]
    for content in assistant_turns:
        req = _request()
        req["messages"].append({"role": "assistant", "content": content})
        req["messages"].append({"role": "user", "content": "and now?"})
        legal.append(req)
    for req in legal:
        assert problems("request", req, DEFAULT) == [], req


@pytest.mark.parametrize(
    ("path", "value", "pointer"),
    [
        ("/model", ..., ""),
        ("/model", "", "/model"),
        ("/messages", [], "/messages"),
        ("/messages", ..., ""),
        ("/messages/1/role", "robot", "/messages/1/role"),
        ("/messages/1/content", [], "/messages/1/content"),
        ("/messages/1/content", ..., "/messages/1"),
        ("/messages/1/content/0/image_url", "https://example.com/cat.jpg", "/messages/1/content/0/image_url"),
        ("/messages/1/content/0/image_url/url", "file:///etc/passwd", "/messages/1/content/0/image_url/url"),
        ("/messages/1/content/0/image_url/url", "ftp://x/y.png", "/messages/1/content/0/image_url/url"),
        (
            "/messages/1/content/0/image_url/url",
            "data:image/png;base64,",
            "/messages/1/content/0/image_url/url",
        ),
        (
            "/messages/1/content/0/image_url/url",
            "data:text/plain;base64,aGk=",
            "/messages/1/content/0/image_url/url",
        ),
        ("/messages/1/content/0/image_url/detail", "ultra", "/messages/1/content/0/image_url/detail"),
        ("/messages/1/content/1/type", "audio", "/messages/1/content/1/type"),
        ("/messages/1/content/1/text", 7, "/messages/1/content/1/text"),
        (
            "/messages/0/content",
            [{"type": "image_url", "image_url": {"url": "https://a/b.png"}}],
            "/messages/0/content/0",
        ),
        ("/stop", ["a", "b", "c", "d", "e"], "/stop"),
        ("/max_tokens", 0, "/max_tokens"),
        ("/max_tokens", 1.5, "/max_tokens"),
        ("/stream", "yes", "/stream"),
        ("/temperature", 3, "/temperature"),
    ],
)
def test_request_rejects(path: str, value: Any, pointer: str) -> None:
    found = problems("request", _set(_request(), path, value), DEFAULT)
    assert found, f"{path}={value!r} passed"
    assert pointer in _pointers(found)


def test_request_roles_and_n_follow_the_profile() -> None:
    developer = _set(_request(), "/messages/0/role", "developer")
    assert _pointers(problems("request", developer, DEFAULT)) == ["/messages/0/role"]
    assert problems("request", developer, OPENAI) == []
    assert problems("request", _set(_request(), "/n", 2), DEFAULT)
    assert problems("request", _set(_request(), "/n", 1), DEFAULT) == []
    assert problems("request", _set(_request(), "/n", 2), OPENAI) == []  # the openai profile supports n


def test_a_huge_data_uri_validates_fast_and_errors_stay_short() -> None:
    big = "data:image/png;base64," + "A" * 20_000_000
    req = _set(_request(), "/messages/1/content/0/image_url/url", big)
    assert problems("request", req, DEFAULT) == []
    bad = _set(req, "/messages/1/content/0/image_url/url", "gopher://" + "A" * 20_000_000)
    found = problems("request", bad, DEFAULT)
    assert found and all(len(p.message) <= 300 for p in found)


# --- response (section 3) ------------------------------------------------------------------------


def test_response_legal_variants_pass() -> None:
    legal = [
        _response(),
        _set(_response(), "/model", "meta-llama/Llama-3.2-11B-Vision-Instruct-Turbo-2024-09-25"),
        _set(_response(), "/choices/0/message/content", ""),
        _set(_response(), "/system_fingerprint", "fp_1"),
        _set(_response(), "/choices/0/message/refusal", None),
        _set(_response(), "/choices/0/logprobs", None),
        _set(_response(), "/usage/prompt_tokens_details", {"cached_tokens": 0}),
        _set(
            _set(_response(), "/choices/0/message/content", None),
            "/choices/0/message/tool_calls",
            [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        ),
    ]
    for doc in legal:
        assert problems("response", doc, DEFAULT) == [], doc
    for reason in ["stop", "length", "tool_calls", "content_filter", "function_call"]:
        assert problems("response", _set(_response(), "/choices/0/finish_reason", reason), DEFAULT) == []


@pytest.mark.parametrize(
    ("path", "value", "pointer"),
    [
        ("/id", ..., ""),
        ("/id", "", "/id"),
        ("/object", "chat.completion.chunk", "/object"),
        ("/created", "2024-01-01", "/created"),
        ("/created", 1_700_000_000.0, "/created"),
        ("/model", "", "/model"),
        ("/choices", ..., ""),
        ("/choices/0/index", ..., "/choices/0"),
        ("/choices/0/message/role", "model", "/choices/0/message/role"),
        ("/choices/0/message/content", None, "/choices/0/message/content"),
        ("/choices/0/message/content", ..., "/choices/0/message"),
        ("/choices/0/finish_reason", "eos_token", "/choices/0/finish_reason"),
        ("/choices/0/finish_reason", None, "/choices/0/finish_reason"),
        ("/usage", ..., ""),
        ("/usage/total_tokens", ..., "/usage"),
        ("/usage/prompt_tokens", -1, "/usage/prompt_tokens"),
        ("/usage/completion_tokens", "3", "/usage/completion_tokens"),
        ("/usage/estimated_cost", ..., "/usage"),
        ("/usage/estimated_cost", -0.5, "/usage/estimated_cost"),
    ],
)
def test_response_rejects_in_the_default_profile(path: str, value: Any, pointer: str) -> None:
    found = problems("response", _set(_response(), path, value), DEFAULT)
    assert pointer in _pointers(found), found


def test_usage_and_estimated_cost_follow_the_profile() -> None:
    no_cost = _set(_response(), "/usage/estimated_cost", ...)
    assert problems("response", no_cost, DEFAULT)
    assert problems("response", no_cost, VLLM) == []
    no_usage = _set(_response(), "/usage", ...)
    assert problems("response", no_usage, VLLM)
    assert problems("response", no_usage) == []  # generic schema: usage optional
    # a negative cost is wrong even where cost is optional
    assert problems("response", _set(_response(), "/usage/estimated_cost", -1), VLLM)


def test_strict_spec_additions_are_separate() -> None:
    plain = _response()
    assert problems("response", plain, DEFAULT) == []
    assert sorted(_pointers(problems("response-strict", plain))) == ["/choices/0", "/choices/0/message"]
    full = _set(_set(plain, "/choices/0/message/refusal", None), "/choices/0/logprobs", None)
    assert problems("response-strict", full) == []


# --- chunks (section 4) --------------------------------------------------------------------------


def test_chunk_legal_variants_pass() -> None:
    usage_chunk = _set(_chunk(), "/choices", [])
    usage_chunk["usage"] = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    legal = [
        _chunk(),
        _set(_chunk(), "/usage", None),
        usage_chunk,
        _set(_chunk(), "/choices/0/delta", {}),
        _set(_chunk(), "/choices/0/delta/content", None),
        _set(_chunk(), "/choices/0/finish_reason", "length"),
        _set(_chunk(), "/model", "org/model-v2-canonical-long-name"),
        _set(_chunk(), "/service_tier", "default"),
    ]
    for doc in legal:
        assert problems("chunk", doc, DEFAULT) == [], doc


@pytest.mark.parametrize(
    ("path", "value", "pointer"),
    [
        ("/id", "", "/id"),
        ("/object", "chat.completion", "/object"),
        ("/created", None, "/created"),
        ("/model", ..., ""),
        ("/choices/0/delta", ..., "/choices/0"),
        ("/choices/0/finish_reason", "eos_token", "/choices/0/finish_reason"),
        ("/choices/0/finish_reason", ..., "/choices/0"),
        ("/choices/0/delta/role", "", "/choices/0/delta/role"),
        ("/choices/0/delta/role", None, "/choices/0/delta/role"),
        ("/usage", {"prompt_tokens": 1}, "/usage"),
    ],
)
def test_chunk_rejects(path: str, value: Any, pointer: str) -> None:
    assert pointer in _pointers(problems("chunk", _set(_chunk(), path, value), DEFAULT))


# --- errors (section 6) and models (section 1) ----------------------------------------------------


def test_error_envelopes() -> None:
    good = {"error": {"message": "bad image", "type": "invalid_request_error", "param": None, "code": None}}
    assert problems("error", good) == [] and problems("error-strict", good) == []
    minimal = {"error": {"message": "bad image"}}
    assert problems("error", minimal) == []
    assert problems("error-strict", minimal)  # SHOULD: all four keys
    numeric = {"error": {"message": "x", "type": "t", "param": None, "code": 400}}
    assert problems("error", numeric) == []
    assert _pointers(problems("error-strict", numeric)) == ["/error/code"]
    for wrong in [{"detail": "bad"}, {"object": "error", "message": "bad"}, {"error": "bad"}, {"error": {}}]:
        assert problems("error", wrong), wrong


def test_models_list() -> None:
    good = {
        "object": "list",
        "data": [
            {"id": "m", "object": "model", "created": 1, "owned_by": "me", "root": "m", "max_model_len": 8}
        ],
    }
    assert problems("models", good) == []
    assert problems("models", {"object": "list", "data": []}) == []
    assert problems("models", _set(good, "/data/0/object", "engine"))
    assert problems("models", _set(good, "/data/0/owned_by", ...))
    assert problems("models", _set(good, "/object", "models"))
    assert problems("models", [good])


# --- the request builder validates against request.json ------------------------------------------


def test_builder_makes_valid_requests_with_the_profile_token_param() -> None:
    from eyechart.wire.build import assistant, chat_request, data_uri, image_part, system, user

    messages = [
        system("Be brief."),
        user(image_part(data_uri(b"\x89PNG\r\n"), detail="low"), "What colour?"),
        assistant(None),
        user("And now?"),
    ]
    req = chat_request("m", messages, stream=True, include_usage=True, max_tokens=8, profile=OPENAI, seed=1)
    assert req["max_completion_tokens"] == 8 and "max_tokens" not in req
    assert req["stream_options"] == {"include_usage": True} and req["seed"] == 1
    assert req["messages"][1]["content"][1] == {"type": "text", "text": "What colour?"}
    assert chat_request("m", [user("hi")], max_tokens=8, profile=DEFAULT)["max_tokens"] == 8
    assert problems("request", req, OPENAI) == []


def test_builder_refuses_its_own_mistakes_unless_told_it_is_on_purpose() -> None:
    from eyechart.wire.build import HarnessBug, chat_request, raw_request, user, user_raw

    with pytest.raises(HarnessBug, match="/messages"):
        chat_request("m", [])
    with pytest.raises(HarnessBug, match="/messages/0/content/0/image_url"):
        chat_request("m", [user_raw({"type": "image_url", "image_url": "https://x/y.png"})])
    with pytest.raises(HarnessBug, match="/stop"):
        chat_request("m", [user("hi")], stop=["a", "b", "c", "d", "e"])
    with pytest.raises(HarnessBug, match="/messages/0/role"):
        chat_request("m", [{"role": "developer", "content": "x"}], profile=DEFAULT)
    probe = chat_request("m", [], validate=False)
    assert probe == {"model": "m", "messages": []} and problems("request", probe)
    assert raw_request(model="m", messages=[user("hi")], max_tokens=0)["max_tokens"] == 0
