"""Workloads: the shipped ones build schema-valid bodies; bad files fail with the file and key named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from eyechart.load.workloads import WorkloadError, available, build_templates, load_workload
from eyechart.wire import schemas

SHIPPED = ["ocr-documents", "captioning-mixed", "multi-image-compare", "text-only-baseline", "chunk-flood"]


def test_shipped_workloads_are_listed() -> None:
    assert set(SHIPPED) <= set(available())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_workload_builds_valid_requests(name: str) -> None:
    wl = load_workload(name)
    templates = build_templates(wl, "m-1")
    assert len(templates) == wl.variants
    for t in templates:
        body = json.loads(t.body)
        assert schemas.problems("request", body) == []
        assert body["model"] == "m-1"
        assert body.get("stream", False) == wl.stream
        if wl.stream and wl.include_usage:
            assert body["stream_options"] == {"include_usage": True}
        images = [p for m in body["messages"] if isinstance(m["content"], list) for p in m["content"]
                  if p["type"] == "image_url"]  # fmt: skip
        assert len(images) == t.images
        assert (t.images == 0) == wl.text_only
        if t.images:
            assert t.pixels > 0 and t.image_bytes > 0
            assert all(p["image_url"]["url"].startswith("data:image/") for p in images)


def test_compare_workload_sends_at_least_two_images() -> None:
    templates = build_templates(load_workload("multi-image-compare"), "m")
    assert min(t.images for t in templates) >= 2


def test_the_sent_mix_follows_the_weights(tmp_path: Path) -> None:
    """Variants are sent uniformly, so their mix must be the workload's mix, not one random draw of it."""
    f = tmp_path / "w.toml"
    f.write_text(
        "variants = 32\nmax_tokens = { 8 = 1, 64 = 1 }\nimages_per_request = { 1 = 3, 2 = 1 }\n"
        '[[images]]\nfixture = "png-rgb"\n[[prompts]]\nkind = "caption"\ntext = "hi"\n'
    )
    templates = build_templates(load_workload(str(f)), "m")
    assert sorted(t.max_tokens for t in templates) == [8] * 16 + [64] * 16
    assert sorted(t.images for t in templates) == [1] * 24 + [2] * 8
    assert [t.max_tokens for t in templates] != [8] * 16 + [64] * 16  # shuffled, not blocked


def test_url_transport_uses_fixture_server_urls(tmp_path: Path) -> None:
    f = tmp_path / "w.toml"
    f.write_text(
        'transport = "url"\n[[images]]\nfixture = "png-rgb"\n[[prompts]]\nkind = "caption"\ntext = "hi"\n'
    )
    templates = build_templates(load_workload(str(f)), "m", url_for=lambda n: f"http://127.0.0.1:9/img/{n}")
    body = json.loads(templates[0].body)
    assert body["messages"][0]["content"][1]["image_url"]["url"] == "http://127.0.0.1:9/img/png-rgb"
    assert templates[0].transport == "url"


def test_folder_source(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (40, 30), "red").save(tmp_path / "imgs" / "a.png")
    f = tmp_path / "w.toml"
    f.write_text('[[images]]\nfolder = "imgs"\n[[prompts]]\ntext = "describe"\n')
    t = build_templates(load_workload(str(f)), "m")[0]
    assert t.pixels == 1200 and t.images == 1


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('images_per_request = 0\n[[prompts]]\ntext = "x"\nbogus = 1\n', "prompts[0].bogus"),
        ('colour = "red"\n[[prompts]]\ntext = "x"\n', "colour"),
        ('images_per_request = { one = 1 }\n[[prompts]]\ntext = "x"\n', "images_per_request"),
        ('images_per_request = 0\nmax_tokens = 0\n[[prompts]]\ntext = "x"\n', "max_tokens"),
        ('images_per_request = 0\ntransport = "ftp"\n[[prompts]]\ntext = "x"\n', "transport"),
        ('[[prompts]]\ntext = "x"\n', "images"),
        ('images_per_request = 0\nstream = "yes"\n[[prompts]]\ntext = "x"\n', "stream"),
        (
            '[[images]]\nsynthetic = { width = 0, height = 10 }\n[[prompts]]\ntext = "x"\n',
            "images[0].synthetic.width",
        ),
        ('[[images]]\nfolder = "nope"\n[[prompts]]\ntext = "x"\n', "images[0].folder"),
        ("images_per_request = 0\n", "prompts"),
        ('images_per_request = 0\n[[prompts]]\nkind = "poem"\ntext = "x"\n', "prompts[0].kind"),
    ],
)
def test_bad_workload_names_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(WorkloadError) as info:
        load_workload(str(f))
    assert str(f) in str(info.value)
    assert repr(key) in str(info.value)


def test_unknown_fixture_and_names(tmp_path: Path) -> None:
    f = tmp_path / "w.toml"
    f.write_text('[[images]]\nfixture = "no-such-fixture"\n[[prompts]]\ntext = "x"\n')
    with pytest.raises(WorkloadError, match="no-such-fixture"):
        build_templates(load_workload(str(f)), "m")
    with pytest.raises(WorkloadError, match=r"available: .*ocr-documents"):
        load_workload("no-such-workload")
    bad = tmp_path / "broken.toml"
    bad.write_text("name = \n")
    with pytest.raises(WorkloadError, match="not valid TOML"):
        load_workload(str(bad))
