"""The reference target's API as a client sees it: real HTTP, the official OpenAI SDK where it fits."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from eyechart.target import DEFAULT_API_KEY
from eyechart.target.launch import RunningTarget, start_target
from eyechart.target.tokens import text_tokens


def image_bytes(size: tuple[int, int], color: tuple[int, int, int], fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def user(text: str, *urls: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}, *(image_part(u) for u in urls)]}


RED = image_bytes((64, 48), (230, 20, 20))
BLUE = image_bytes((64, 48), (20, 20, 230))
PROMPT = "What is in this image?"


@pytest.fixture(scope="module")
def client(target: RunningTarget) -> openai.OpenAI:
    return openai.OpenAI(base_url=target.base_url, api_key=target.api_key, timeout=20, max_retries=0)


@pytest.fixture(scope="module")
def http(target: RunningTarget) -> httpx.Client:
    with httpx.Client(timeout=20, headers={"Authorization": f"Bearer {target.api_key}"}) as c:
        yield c  # type: ignore[misc]


def test_models_lists_exactly_the_served_model_on_both_route_styles(
    target: RunningTarget, client: openai.OpenAI, http: httpx.Client
) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == [target.model] == ["meta-llama/Llama-3.2-11B-Vision-Instruct"]
    body = http.get(f"{target.root_url}/v1/models").json()
    assert body["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in body["data"]] == [
        (target.model, "model", "eyechart")
    ]
    assert isinstance(body["data"][0]["created"], int)


def test_image_chat_with_the_sdk_reports_usage_and_cost(client: openai.OpenAI, target: RunningTarget) -> None:
    resp = client.chat.completions.create(model=target.model, messages=[user(PROMPT, data_uri(RED))])  # type: ignore[list-item]
    assert resp.object == "chat.completion" and resp.id and resp.model == target.model
    choice = resp.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert "red" in (choice.message.content or "").lower()  # the answer depends on the pixels
    usage = resp.usage
    assert usage is not None
    # Llama 3.2 Vision rule: a 64x48 image fits one 560 px tile = 1601 tokens.
    assert usage.prompt_tokens == text_tokens(PROMPT) + 1601
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens == text_tokens(choice.message.content or "")
    cost = (usage.model_extra or {})["estimated_cost"]
    assert cost == pytest.approx((usage.prompt_tokens + usage.completion_tokens) * 0.049 / 1e6, rel=1e-6)


def test_url_and_base64_of_the_same_bytes_count_and_answer_the_same(
    client: openai.OpenAI, target: RunningTarget, image_server: Any
) -> None:
    wide = image_bytes((1120, 560), (20, 160, 20), "JPEG")
    url = image_server.add("wide.jpg", wide, "image/jpeg")
    kw: dict[str, Any] = {"model": target.model, "seed": 7, "temperature": 0}
    by_url = client.chat.completions.create(messages=[user(PROMPT, url)], **kw)
    by_b64 = client.chat.completions.create(messages=[user(PROMPT, data_uri(wide, "image/jpeg"))], **kw)
    assert by_url.usage and by_b64.usage
    assert by_url.usage.prompt_tokens == by_b64.usage.prompt_tokens == text_tokens(PROMPT) + 2 * 1601
    assert by_url.choices[0].message.content == by_b64.choices[0].message.content


def test_more_images_and_more_turns_count_more_tokens(client: openai.OpenAI, target: RunningTarget) -> None:
    def prompt_tokens(messages: list[dict[str, Any]]) -> int:
        resp = client.chat.completions.create(model=target.model, messages=messages)  # type: ignore[arg-type]
        assert resp.usage is not None
        return resp.usage.prompt_tokens

    none = prompt_tokens([user(PROMPT)])
    one = prompt_tokens([user(PROMPT, data_uri(RED))])
    two = prompt_tokens([user(PROMPT, data_uri(RED), data_uri(BLUE))])
    assert none < one < two
    assert two - one == one - none == 1601
    conversation = [
        {"role": "system", "content": "You describe images briefly."},
        user("Here is the first picture.", data_uri(RED)),
        {"role": "assistant", "content": "A red picture."},
        user("And this one? Name both colours.", data_uri(BLUE)),
    ]
    resp = client.chat.completions.create(model=target.model, messages=conversation)  # type: ignore[arg-type]
    assert resp.usage is not None
    texts = [
        "You describe images briefly.",
        "Here is the first picture.",
        "A red picture.",
        "And this one? Name both colours.",
    ]
    assert resp.usage.prompt_tokens == sum(text_tokens(t) for t in texts) + 2 * 1601
    answer = (resp.choices[0].message.content or "").lower()
    assert "2 images" in answer or "two images" in answer or ("red" in answer and "blue" in answer)


def test_max_tokens_stop_and_seed_shape_the_answer(client: openai.OpenAI, target: RunningTarget) -> None:
    messages: Any = [user(PROMPT, data_uri(RED))]
    full = client.chat.completions.create(model=target.model, messages=messages, seed=3)
    again = client.chat.completions.create(model=target.model, messages=messages, seed=3)
    text = full.choices[0].message.content or ""
    assert text == again.choices[0].message.content
    capped = client.chat.completions.create(model=target.model, messages=messages, seed=3, max_tokens=3)
    assert capped.choices[0].finish_reason == "length"
    assert capped.usage is not None and capped.usage.completion_tokens == 3
    assert text.startswith(capped.choices[0].message.content or "?")
    stop_word = text.split()[3]
    stopped = client.chat.completions.create(
        model=target.model, messages=messages, seed=3, stop=[stop_word, "zzz"]
    )
    content = stopped.choices[0].message.content or ""
    assert stopped.choices[0].finish_reason == "stop"
    assert stop_word not in content and text.startswith(content) and len(content) < len(text)


def _error_of(resp: httpx.Response) -> dict[str, Any]:
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    err = body["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert err["code"] is None or isinstance(err["code"], str)
    assert "Traceback" not in err["message"] and "/site-packages/" not in err["message"]
    return err  # type: ignore[no-any-return]


GIF = image_bytes((2, 2), (0, 0, 0), "GIF")
MODEL = "meta-llama/Llama-3.2-11B-Vision-Instruct"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, 400, None),
        ({"model": MODEL, "messages": []}, 400, "messages"),
        ({"model": MODEL, "messages": [{"role": "user", "content": []}]}, 400, "messages[0].content"),
        (
            {
                "model": MODEL,
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": "http://x/a.png"}]}
                ],
            },
            400,
            "messages[0].content[0].image_url",
        ),
        ({"model": "no/such-model", "messages": [{"role": "user", "content": "hi"}]}, 404, "model"),
        ({"model": MODEL, "messages": [user("?", data_uri(GIF, "image/png"))]}, 400, None),
        ({"model": MODEL, "messages": [user("?", "data:image/png;base64,%%%not-base64%%%")]}, 400, None),
        ({"model": MODEL, "messages": [user("?", "data:image/png;base64,")]}, 400, None),
        ({"model": MODEL, "messages": [user("?", data_uri(RED[: len(RED) // 2]))]}, 400, None),
        ({"model": MODEL, "messages": [user("?", "file:///etc/passwd")]}, 400, None),
        ({"model": MODEL, "messages": [user("a " * 140_000)]}, 400, "messages"),
    ],
    ids=[
        "no-model",
        "empty-messages",
        "empty-content",
        "image_url-string",
        "unknown-model",
        "gif-labelled-png",
        "invalid-base64",
        "empty-data-uri",
        "truncated-png",
        "file-scheme",
        "over-context",
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_client_mistakes_get_4xx_with_the_envelope_even_when_streaming(
    http: httpx.Client,
    target: RunningTarget,
    body: dict[str, Any],
    status: int,
    param: str | None,
    stream: bool,
) -> None:
    resp = http.post(f"{target.base_url}/chat/completions", json={**body, "stream": stream})
    assert resp.status_code == status, resp.text[:300]
    err = _error_of(resp)
    if param is not None:
        assert err["param"] == param


def test_bad_json_unknown_url_and_unreachable_image(
    http: httpx.Client, target: RunningTarget, image_server: Any
) -> None:
    resp = http.post(
        f"{target.base_url}/chat/completions",
        content=b'{"model": ',
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 400 and _error_of(resp)["code"] == "invalid_json"
    missing = image_server.add("page.html", b"<html>not an image</html>", "text/html")
    for url in (missing, missing.replace("page.html", "absent.png"), "http://127.0.0.1:9/closed.png"):
        resp = http.post(
            f"{target.base_url}/chat/completions", json={"model": MODEL, "messages": [user("?", url)]}
        )
        assert 400 <= resp.status_code < 500, (url, resp.text[:200])
        _error_of(resp)
    resp = http.get(f"{target.root_url}/v1/openai/nothing-here")
    assert resp.status_code == 404 and _error_of(resp)["code"] == "not_found"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_missing_or_wrong_key_is_a_401_json_envelope(
    target: RunningTarget, stream: bool, key: str | None
) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    resp = httpx.post(f"{target.base_url}/chat/completions", json=body, headers=headers, timeout=10)
    assert resp.status_code == 401
    assert _error_of(resp)["type"] == "authentication_error"
    assert httpx.get(f"{target.base_url}/models", headers=headers, timeout=10).status_code == 401
    assert DEFAULT_API_KEY not in resp.text


def test_api_key_from_the_environment_and_other_profiles() -> None:
    args = ["--model-profile", "qwen2.5-vl-7b", "--model", "my/qwen", "--latency", "zero"]
    with start_target(api_key="sekrit-123", args=args) as t:
        assert t.model == "my/qwen"
        c = openai.OpenAI(
            base_url=t.base_url.replace("/v1/openai", "/v1"), api_key="sekrit-123", max_retries=0
        )
        resp = c.chat.completions.create(model="my/qwen", messages=[user(PROMPT, data_uri(RED))])  # type: ignore[list-item]
        # Qwen2-VL rule: 64x48 → smart_resize 56x56 → (2·2) + 2 = 6 tokens.
        assert resp.usage is not None and resp.usage.prompt_tokens == text_tokens(PROMPT) + 6
        bad = openai.OpenAI(base_url=t.base_url, api_key=DEFAULT_API_KEY, max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
