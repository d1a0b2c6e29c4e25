"""Images (conformance/CONTRACT.md, ``images.*``): transports, formats, modes, data-URI variants,
bad images, counting.

Formats come from the profile (``formats``): each accepted format must get 200, every other known
format a 4xx with an error body. The format is judged from the bytes: PNG labelled ``image/jpeg`` may
be accepted or refused (never 5xx); GIF labelled ``image/png`` is refused. Images that must be
refused must never get a 200 (an answer invented about an image the server could not read).
Token checks compare ``prompt_tokens`` of otherwise identical requests.
"""

from __future__ import annotations

import base64
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest

from eyechart.conform.checks import check, expect, fail, skip
from eyechart.conform.session import Session, expect_refusal, json_of, prompt_tokens
from eyechart.images import MUST_MODES, SHOULD_MODES, fixtures
from eyechart.pytest_plugin import profile_for

PROMPT = "Describe this image in one sentence."
SEPARATOR_SLACK = 2  # tokens a chat template may add between images
LARGE_TIMEOUT = 90.0  # a 10000x10000 image may take a while to decode (or refuse)

# a representative fixture per format; formats without a fixture (heic) cannot be probed
FORMAT_FIXTURES = {
    "jpeg": "jpeg-rgb",
    "png": "png-rgb",
    "webp": "webp-lossy",
    "gif": "gif",
    "bmp": "bmp",
    "tiff": "tiff",
    "avif": "avif",
    "svg": "svg",
    "html": "html",
    "text": "text",
}


def _known_formats() -> list[str]:
    have = set(fixtures.names())
    return [f for f, name in FORMAT_FIXTURES.items() if name in have]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Accepted and refused formats follow the run's profile (``--profile-set formats=...``)."""
    if "accepted_fmt" in metafunc.fixturenames or "refused_fmt" in metafunc.fixturenames:
        formats = tuple(profile_for(metafunc.config).formats)
        if "accepted_fmt" in metafunc.fixturenames:
            metafunc.parametrize("accepted_fmt", [f for f in _known_formats() if f in formats])
        else:
            metafunc.parametrize("refused_fmt", [f for f in _known_formats() if f not in formats])


# ---------------------------------------------------------------------------------------------- helpers


def _ok(ex: Any, what: str) -> None:
    __tracebackhide__ = True
    expect(ex.status == 200, f"{what} did not get 200", exchange=ex, expected=200, got=ex.status)


def _refused(api: Session, ex: Any, what: str) -> None:
    """4xx with an error body; a 200 is an invented answer, a 5xx a server fault."""
    __tracebackhide__ = True
    expect_refusal(ex, what, api.profile, if_200="got 200 instead of a 4xx refusal")


def _ok_or_refused(api: Session, ex: Any, what: str) -> None:
    """200, or a clean 4xx with an error body — never 5xx."""
    __tracebackhide__ = True
    if ex.status == 200:
        return
    _refused(api, ex, what)


def _prompt_tokens(api: Session, ex: Any, what: str) -> int:
    """``usage.prompt_tokens`` of a response that must be a 200."""
    __tracebackhide__ = True
    _ok(ex, what)
    return prompt_tokens(ex, api.profile, what)


def _send(
    api: Session,
    images: list[str],
    *,
    url: bool = False,
    prompt: str = PROMPT,
    valid: bool = True,
    timeout: float | None = None,
) -> Any:
    body = api.vision_body(images, prompt, url=url, temperature=0, seed=7, max_tokens=8)
    return api.chat(body, valid=valid, timeout=timeout)


@pytest.fixture(scope="module")
def tokens_of(api: Session) -> dict[tuple[str, ...], tuple[Any, int]]:
    """prompt_tokens per image list (sent once, reused by the counting checks)."""
    return {}


def _count(
    api: Session, cache: dict[tuple[str, ...], tuple[Any, int]], images: tuple[str, ...]
) -> tuple[Any, int]:
    if images not in cache:
        ex = (
            _send(api, list(images))
            if images
            else api.chat(api.text_body(PROMPT, temperature=0, seed=7, max_tokens=8))
        )
        cache[images] = (ex, _prompt_tokens(api, ex, f"a request with {len(images)} image(s)"))
    return cache[images]


def _used(api: Session, cache: dict[tuple[str, ...], tuple[Any, int]], ex: Any, what: str) -> None:
    """An accepted image must be used, not silently dropped: it adds prompt tokens to the text alone."""
    __tracebackhide__ = True
    body = json_of(ex)
    usage = body.get("usage") if isinstance(body, dict) else None
    got = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if not isinstance(got, int) or isinstance(got, bool):
        return  # no usage: nothing to compare (response.usage_total judges usage itself)
    _, text_only = _count(api, cache, ())
    expect(
        got > text_only,
        f"{what} got 200 but adds no prompt tokens: it was dropped",
        exchange=ex,
        expected=f"> {text_only} (the text alone)",
        got=got,
    )


# ---------------------------------------------------------------------------------------------- transports


@check("images.transport.url", severity="MUST", clause="images.transport")
def test_transport_url(api: Session) -> None:
    _ok(_send(api, ["png-rgb"], url=True), "an image by URL")


@check("images.transport.base64", severity="MUST", clause="images.transport")
def test_transport_base64(api: Session) -> None:
    _ok(_send(api, ["png-rgb"]), "an image as a base64 data URI")


# ---------------------------------------------------------------------------------------------- formats


@check(
    "images.format_accepted.{accepted_fmt}",
    severity="MUST",
    clause="images.formats",
)
def test_format_accepted(
    api: Session, accepted_fmt: str, tokens_of: dict[tuple[str, ...], tuple[Any, int]]
) -> None:
    what = f"a {accepted_fmt} image"
    ex = _send(api, [FORMAT_FIXTURES[accepted_fmt]])
    _ok(ex, what)
    _used(api, tokens_of, ex, what)


@check(
    "images.format_refused.{refused_fmt}",
    severity="MUST",
    clause="images.formats",
)
def test_format_refused(api: Session, refused_fmt: str) -> None:
    name = FORMAT_FIXTURES[refused_fmt]
    uri = api.data_uri(name)
    if not uri.startswith("data:image/"):  # html, text: label them as images, as a careless client would
        uri = api.data_uri(name, "image/png")
    _refused(api, _send(api, [uri]), f"a {refused_fmt} image")


@check(
    "images.mislabelled_png_as_jpeg",
    severity="MUST",
    clause="images.formats",
)
def test_png_as_jpeg(api: Session) -> None:
    _ok_or_refused(api, _send(api, [api.data_uri("png-rgb", "image/jpeg")]), "PNG bytes labelled image/jpeg")


@check("images.mislabelled_gif_as_png", severity="MUST", clause="images.formats")
def test_gif_as_png(api: Session) -> None:
    if "gif" in api.profile.formats:
        skip(f"profile {api.profile.name} accepts GIF")
    _refused(api, _send(api, [api.data_uri("gif", "image/png")]), "GIF bytes labelled image/png")


# ---------------------------------------------------------------------------------------------- modes


def _mode(api: Session, name: str, tokens_of: dict[tuple[str, ...], tuple[Any, int]]) -> None:
    fmt = fixtures.get(name).format
    if fmt not in api.profile.formats:
        skip(f"profile {api.profile.name} does not accept {fmt}")
    what = f"the {name} image ({fixtures.get(name).description})"
    ex = _send(api, [name])
    _ok(ex, what)
    _used(api, tokens_of, ex, what)


@pytest.mark.parametrize("name", MUST_MODES)
@check(
    "images.mode.{name}",
    severity="MUST",
    clause="images.modes",
)
def test_mode_must(api: Session, name: str, tokens_of: dict[tuple[str, ...], tuple[Any, int]]) -> None:
    _mode(api, name, tokens_of)


@pytest.mark.parametrize("name", SHOULD_MODES)
@check(
    "images.mode.{name}",
    severity="SHOULD",
    clause="images.modes",
)
def test_mode_should(api: Session, name: str, tokens_of: dict[tuple[str, ...], tuple[Any, int]]) -> None:
    _mode(api, name, tokens_of)


@check(
    "images.large_side",
    severity="MUST",
    clause="images.modes",
)
def test_large_side(api: Session) -> None:
    _ok_or_refused(api, _send(api, ["size-10000x10000"], timeout=LARGE_TIMEOUT), "a 10000×10000 image")


@check(
    "images.extreme_aspect",
    severity="MUST",
    clause="images.modes",
)
def test_extreme_aspect(api: Session) -> None:
    _ok_or_refused(api, _send(api, ["size-4000x20"]), "a 4000×20 image")


# ---------------------------------------------------------------------------------------------- data URIs


def _padded_fixture() -> str:
    for name in ("png-rgb", "jpeg-rgb", "colour-red", "png-palette", "colour-blue", "colour-green"):
        if fixtures.get(name).size % 3:
            return name
    raise AssertionError("no padded fixture")  # pragma: no cover - a harness bug, not a server finding


def _variant_uri(variant: str) -> str:
    if variant == "image_jpg":
        return fixtures.get("jpeg-rgb").data_uri("image/jpg")
    if variant == "charset":
        return (
            fixtures.get("png-rgb").data_uri().replace("data:image/png;", "data:image/png;charset=utf-8;", 1)
        )
    if variant == "unpadded":
        return fixtures.get(_padded_fixture()).data_uri().rstrip("=")
    if variant == "line_breaks":
        head, _, payload = fixtures.get("png-rgb").data_uri().partition(",")
        return head + "," + "\n".join(payload[i : i + 76] for i in range(0, len(payload), 76))
    raise ValueError(variant)


@pytest.mark.parametrize("variant", ["image_jpg", "charset", "unpadded", "line_breaks"])
@check(
    "images.datauri_variant.{variant}",
    severity="MUST",
    clause="images.data_uri",
)
def test_datauri_variant(api: Session, variant: str) -> None:
    _ok_or_refused(api, _send(api, [_variant_uri(variant)]), f"a data URI with {variant.replace('_', ' ')}")


@check("images.invalid_base64", severity="MUST", clause="images.data_uri")
def test_invalid_base64(api: Session) -> None:
    payload = base64.b64encode(fixtures.get("png-rgb").data()[:300]).decode()
    uri = "data:image/png;base64,!!" + payload[2:100] + "*** not base64 ***"
    _refused(api, _send(api, [uri]), "a data URI with invalid base64")


@check(
    "images.empty_datauri",
    severity="MUST",
    clause="images.data_uri",
)
def test_empty_datauri(api: Session) -> None:
    _refused(api, _send(api, ["data:image/png;base64,"], valid=False), "an empty data URI")


@check(
    "images.truncated_jpeg",
    severity="MUST",
    clause="images.bad_input",
)
def test_truncated_jpeg(api: Session) -> None:
    _refused(api, _send(api, ["jpeg-truncated"]), "a truncated JPEG")


# ---------------------------------------------------------------------------------------------- bad URLs


@check("images.url_404", severity="MUST", clause="images.bad_input")
def test_url_404(api: Session) -> None:
    _refused(api, _send(api, [api.fixtures.url("/404")]), "an image URL that answers 404")


@check("images.url_html", severity="MUST", clause="images.bad_input")
def test_url_html(api: Session) -> None:
    _refused(api, _send(api, [api.fixtures.url("/html-as-png")]), "an image URL that returns an HTML page")


def _closed_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host.strip("[]"), 0))
        return int(s.getsockname()[1])


@check("images.url_unreachable", severity="MUST", clause="images.bad_input")
def test_url_unreachable(api: Session) -> None:
    host = urlsplit(api.fixtures.base_url).hostname or "127.0.0.1"
    try:
        port = _closed_port(api.fixtures.bind if api.fixtures.bind not in ("", "0.0.0.0", "::") else host)
    except OSError:
        skip(f"cannot find a closed port on {host}")
    netloc = f"[{host}]" if ":" in host else host
    _refused(
        api,
        _send(api, [f"http://{netloc}:{port}/img/png-rgb"], timeout=60.0),
        "an image URL nobody listens on",
    )


# ---------------------------------------------------------------------------------------------- detail


@check(
    "images.detail",
    severity="MUST",
    clause="images.detail",
)
def test_detail(api: Session, tokens_of: dict[tuple[str, ...], tuple[Any, int]]) -> None:
    results = {}
    for detail in ("low", "high", "auto"):
        body = api.vision_body([], PROMPT, temperature=0, seed=7, max_tokens=8)
        body["messages"][0]["content"].append(api.image_part("png-rgb", detail=detail))
        results[detail] = api.chat(body)
    if api.profile.detail_supported:
        for detail, ex in results.items():
            _ok(ex, f'an image with detail "{detail}"')
        low, high = (_prompt_tokens(api, results[d], f"detail {d}") for d in ("low", "high"))
        expect(
            low <= high,
            'detail "low" costs more prompt tokens than "high"',
            exchange=results["low"],
            expected=f"≤ {high}",
            got=low,
        )
        return
    _, plain = _count(api, tokens_of, ("png-rgb",))
    for detail, ex in results.items():
        _ok_or_refused(api, ex, f'an image with detail "{detail}"')
        if ex.status == 200:
            got = _prompt_tokens(api, ex, f"detail {detail}")
            expect(
                got == plain,
                f'detail "{detail}" is not supported by the profile but changed prompt_tokens',
                exchange=ex,
                expected=plain,
                got=got,
            )


# ------------------------------------------------------------------------------------ several images


@check("images.multi_image", severity="MUST", clause="images.counting")
def test_multi_image(api: Session, tokens_of: dict[tuple[str, ...], tuple[Any, int]]) -> None:
    _count(api, tokens_of, ("colour-red", "colour-blue"))


@check("images.multi_turn", severity="MUST", clause="images.counting")
def test_multi_turn(api: Session) -> None:
    def convo(first_image: bool) -> dict[str, Any]:
        first: list[dict[str, Any]] = [{"type": "text", "text": "What colour is this?"}]
        if first_image:
            first.append(api.image_part("colour-red"))
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": first},
            {"role": "assistant", "content": "It is a colour."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "And this one?"}, api.image_part("colour-blue")],
            },
        ]
        return api.body(messages, temperature=0, seed=7, max_tokens=8)

    both = api.chat(convo(True))
    got = _prompt_tokens(api, both, "a conversation with an image in each of two turns")
    one = api.chat(convo(False))
    without = _prompt_tokens(api, one, "the same conversation without the first turn's image")
    expect(
        got > without,
        "the image of the earlier turn does not count: it was dropped",
        exchange=both,
        expected=f"> {without} prompt tokens",
        got=got,
    )


@check(
    "images.image_counts",
    severity="MUST",
    clause="images.counting",
)
def test_image_counts(api: Session, tokens_of: dict[tuple[str, ...], tuple[Any, int]]) -> None:
    ex, with_image = _count(api, tokens_of, ("colour-red",))
    _, text_only = _count(api, tokens_of, ())
    expect(
        with_image > text_only,
        "the image adds no prompt tokens",
        exchange=ex,
        expected=f"> {text_only}",
        got=with_image,
    )
    if with_image - text_only <= 1:
        fail(
            "the image is counted as a single prompt token",
            exchange=ex,
            expected="the image's real token cost",
            got=with_image - text_only,
        )


@check("images.more_images_more_tokens", severity="MUST", clause="images.counting")
def test_more_images(api: Session, tokens_of: dict[tuple[str, ...], tuple[Any, int]]) -> None:
    ex, two = _count(api, tokens_of, ("colour-red", "colour-blue"))
    _, one = _count(api, tokens_of, ("colour-red",))
    expect(
        two > one,
        "two images count no more prompt tokens than one",
        exchange=ex,
        expected=f"> {one}",
        got=two,
    )


@check(
    "images.same_image_twice",
    severity="SHOULD",
    clause="images.counting",
)
def test_same_image_twice(api: Session, tokens_of: dict[tuple[str, ...], tuple[Any, int]]) -> None:
    ex, twice = _count(api, tokens_of, ("colour-red", "colour-red"))
    _, once = _count(api, tokens_of, ("colour-red",))
    _, none = _count(api, tokens_of, ())
    image = once - none
    expect(
        abs((twice - once) - image) <= SEPARATOR_SLACK,
        "the same image twice does not cost twice its tokens",
        exchange=ex,
        expected=f"{once + image} (± {SEPARATOR_SLACK})",
        got=twice,
    )
