"""Tests of the weights registry, folders, downloads and resolution (all offline)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from pathlib import Path
from typing import Any

import pytest

from samadapter import registry, weights
from samadapter.errors import ConfigError, WeightsError
from samadapter.weights import (
    REGISTRY,
    WeightSpec,
    default_weights_dir,
    download,
    effective_url,
    find_file,
    get_spec,
    is_offline,
    resolve_weights,
    search_dirs,
    url_env_var,
    verify_file,
)

PAYLOAD = b"samadapter test weights\n" * 1000


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real cache, no offline flag, no URL overrides leak in; cwd is an empty temp dir."""
    monkeypatch.setenv("SAMADAPTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SAMADAPTER_OFFLINE", raising=False)
    for var in [v for v in os.environ if v.startswith("SAMADAPTER_URL_")]:
        monkeypatch.delenv(var)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail any non-file URL opened by the downloader; record every URL opened."""
    opened: list[str] = []
    real = weights.urllib.request.urlopen

    def guarded(request: Any, *args: Any, **kwargs: Any) -> Any:
        url = request.full_url if hasattr(request, "full_url") else str(request)
        opened.append(url)
        if not url.startswith("file://"):
            raise AssertionError(f"test tried to reach the network: {url}")
        return real(request, *args, **kwargs)

    monkeypatch.setattr(weights.urllib.request, "urlopen", guarded)
    return opened


def _source(tmp_path: Path, data: bytes = PAYLOAD) -> Path:
    src = tmp_path / "src" / "payload.bin"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    return src


def _model(spec: WeightSpec) -> registry.Model:
    """The registry model whose file ``spec`` is."""
    return next(m for m in registry.MODELS if m.file is spec)


def _spec(url: str | None, **kwargs: object) -> WeightSpec:
    fields: dict[str, Any] = {
        "name": "test_file",
        "kind": "adapter",
        "filename": "test_file.pth",
        "url": url,
    }
    fields.update(kwargs)
    return WeightSpec(**fields)


# ------------------------------------------------------------------ registry


def test_sam_md5_prefix_matches_file_name() -> None:
    sams = [spec for spec in REGISTRY.values() if spec.kind == "sam"]
    assert sorted(spec.name for spec in sams) == ["sam_vit_b", "sam_vit_h", "sam_vit_l"]
    for spec in sams:
        digits = re.fullmatch(r"sam_vit_[blh]_([0-9a-f]{6})\.pth", spec.filename)
        assert digits is not None, spec.filename
        assert spec.md5_prefix == digits.group(1)
        assert spec.sha256 is None
        assert spec.url == f"https://dl.fbaipublicfiles.com/segment_anything/{spec.filename}"
        assert _model(spec).name == spec.name.removeprefix("sam_")
    assert REGISTRY["sam_vit_b"].filename == "sam_vit_b_01ec64.pth"
    assert REGISTRY["sam_vit_l"].filename == "sam_vit_l_0b3195.pth"
    assert REGISTRY["sam_vit_h"].filename == "sam_vit_h_4b8939.pth"


def test_all_urls_https_and_names_match_keys() -> None:
    for name, spec in REGISTRY.items():
        assert spec.name == name
        assert spec.url is not None and spec.url.startswith("https://"), name
        assert spec.url.endswith(spec.filename) or spec.kind == "clip"


def test_clip_and_adapter_configs() -> None:
    large = REGISTRY["convnext_large_d_320"]
    m = _model(large)
    assert (m.name, m.pretrained, m.clip_arch().embed_dim, m.dense_dim) == (
        "convnext_large_d_320",
        "laion2b_s29b_b131k_ft_soup",
        768,
        1536,
    )
    assert large.url == (
        "https://huggingface.co/laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup"
        "/resolve/main/open_clip_pytorch_model.bin"
    )
    base = REGISTRY["convnext_base_w_320"]
    assert _model(base).pretrained == "laion_aesthetic_s13b_b82k_augreg"
    assert (_model(base).clip_arch().embed_dim, _model(base).dense_dim) == (640, 1024)
    assert "laion/CLIP-convnext_base_w_320-laion_aesthetic-s13B-b82K-augreg" in str(base.url)
    fc = REGISTRY["fcclip_convnext_large"]
    assert fc.filename == "fcclip_convnext_large_maskadapter.pth"
    assert fc.url == (
        "https://huggingface.co/owl10/Mask-Adapter/resolve/main/"
        "fcclip_convnext_large_maskadapter.pth"
    )
    m = _model(fc)
    assert (m.clip, m.layout, m.includes_clip) == ("convnext_large_d_320", "detectron2", True)
    demo = REGISTRY["demo"]
    assert demo.filename == "model_0279999_with_sem_new.pth"
    assert _model(demo).layout == "demo" and _model(demo).includes_clip is False
    assert "unverified" in demo.note
    assert _model(REGISTRY["maftp_convnext_base"]).clip == "convnext_base_w_320"


def test_clip_pretrained_tags_exist_in_open_clip() -> None:
    open_clip = pytest.importorskip("open_clip")
    for spec in REGISTRY.values():
        if spec.kind == "clip":
            tags = open_clip.list_pretrained_tags_by_model(_model(spec).name)
            assert _model(spec).pretrained in tags


def test_spec_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        REGISTRY["sam_vit_b"].url = "https://example.invalid"  # type: ignore[misc]


def test_get_spec_known() -> None:
    assert get_spec("sam_vit_b") is REGISTRY["sam_vit_b"]


def test_get_spec_unknown_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as info:
        get_spec("sam_vit_x")
    message = str(info.value)
    assert "'sam_vit_x'" in message
    for name in ("sam_vit_b", "demo", "fcclip_convnext_large", "convnext_base_w_320"):
        assert name in message


@pytest.mark.parametrize("name", ["maftp_convnext_large", "maftp_convnext_base"])
def test_maftp_files_are_supported_with_their_official_names(name: str) -> None:
    spec = get_spec(name)
    assert spec.supported is True and spec.kind == "adapter"
    assert spec.filename == f"{name}_maskadapter.pth"
    assert spec.url == f"https://huggingface.co/owl10/Mask-Adapter/resolve/main/{spec.filename}"
    assert _model(spec).includes_clip is True and _model(spec).layout == "detectron2"
    assert ("16.2" in spec.note) == (name == "maftp_convnext_large")


def test_get_spec_unsupported_gives_note(monkeypatch: pytest.MonkeyPatch) -> None:
    old = dataclasses.replace(
        REGISTRY["demo"], name="old_thing", supported=False, note="cannot load this yet"
    )
    monkeypatch.setitem(REGISTRY, old.name, old)
    with pytest.raises(ConfigError, match="not supported: cannot load this yet"):
        get_spec("old_thing")


def test_url_env_var_names() -> None:
    assert url_env_var("sam_vit_b") == "SAMADAPTER_URL_SAM_VIT_B"
    assert url_env_var("tiny-random") == "SAMADAPTER_URL_TINY_RANDOM"
    assert url_env_var("convnext_large_d_320") == "SAMADAPTER_URL_CONVNEXT_LARGE_D_320"


def test_url_override(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = REGISTRY["demo"]
    assert effective_url(spec) == spec.url
    monkeypatch.setenv("SAMADAPTER_URL_DEMO", "file:///mirror/demo.pth")
    assert effective_url(spec) == "file:///mirror/demo.pth"


# ------------------------------------------------------------------ folders


def test_default_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAMADAPTER_HOME", str(tmp_path / "custom"))
    assert default_weights_dir() == tmp_path / "custom"
    monkeypatch.delenv("SAMADAPTER_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert default_weights_dir() == tmp_path / "user" / ".cache" / "samadapter"


def test_search_dirs_cwd_weights_only_when_present(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert search_dirs() == [home]
    local = Path.cwd() / "weights"
    local.mkdir()
    assert search_dirs() == [home, local]


def test_search_dirs_explicit_dir_is_the_only_one(tmp_path: Path) -> None:
    (Path.cwd() / "weights").mkdir()
    assert search_dirs(tmp_path / "mine") == [tmp_path / "mine"]


def test_find_file_order_and_override(tmp_path: Path) -> None:
    spec = REGISTRY["sam_vit_b"]
    assert find_file(spec) is None
    local = Path.cwd() / "weights"
    local.mkdir()
    (local / spec.filename).write_bytes(b"x")
    assert find_file(spec) == local / spec.filename
    home = tmp_path / "home"
    home.mkdir()
    (home / spec.filename).write_bytes(b"x")
    assert find_file(spec) == home / spec.filename
    mine = tmp_path / "mine"
    mine.mkdir()
    assert find_file(spec, mine) is None
    (mine / spec.filename).write_bytes(b"x")
    assert find_file(spec, mine) == mine / spec.filename


def test_is_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_offline(None) is False
    assert is_offline(False) is False
    assert is_offline(True) is True
    monkeypatch.setenv("SAMADAPTER_OFFLINE", "1")
    assert is_offline(None) is True
    assert is_offline(False) is True
    monkeypatch.setenv("SAMADAPTER_OFFLINE", "0")
    assert is_offline(None) is False


# ------------------------------------------------------------------ verify / download


def test_verify_file_md5_prefix(tmp_path: Path) -> None:
    src = _source(tmp_path)
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    verify_file(src, _spec(None, md5_prefix=md5[:6]))
    with pytest.raises(WeightsError) as info:
        verify_file(src, _spec(None, md5_prefix="000000" if md5[:6] != "000000" else "ffffff"))
    assert "test_file.pth" in str(info.value) and md5 in str(info.value)


def test_verify_file_sha256_wins_over_md5(tmp_path: Path) -> None:
    src = _source(tmp_path)
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    verify_file(src, _spec(None, sha256=sha, md5_prefix="zzzzzz"))
    with pytest.raises(WeightsError, match=f"expected sha256 {'0' * 64}, got {sha}"):
        verify_file(src, _spec(None, sha256="0" * 64))


def test_verify_file_empty_and_missing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match="empty"):
        verify_file(empty, _spec(None))
    with pytest.raises(WeightsError, match="not found"):
        verify_file(tmp_path / "nope.pth", _spec(None))
    verify_file(_source(tmp_path), _spec(None))  # no checksum known: non-empty is enough


def test_download_file_url(tmp_path: Path, no_network: list[str]) -> None:
    src = _source(tmp_path)
    spec = _spec(src.as_uri(), sha256=hashlib.sha256(PAYLOAD).hexdigest())
    dest = tmp_path / "dest"
    path = download(spec, dest, progress=False)
    assert path == dest / "test_file.pth"
    assert path.read_bytes() == PAYLOAD
    # no temporary file left; the sidecar records what was downloaded
    assert sorted(p.name for p in dest.iterdir()) == [".test_file.pth.sha256.json", "test_file.pth"]
    assert weights.recorded_sha256(path) == hashlib.sha256(PAYLOAD).hexdigest()
    assert no_network == [src.as_uri()]


def test_download_md5_prefix_ok(tmp_path: Path, no_network: list[str]) -> None:
    src = _source(tmp_path)
    spec = _spec(src.as_uri(), md5_prefix=hashlib.md5(PAYLOAD).hexdigest()[:6])
    assert download(spec, tmp_path / "dest", progress=False).read_bytes() == PAYLOAD


@pytest.mark.parametrize("field", ["sha256", "md5_prefix"])
def test_download_bad_checksum_leaves_nothing(
    tmp_path: Path, no_network: list[str], field: str
) -> None:
    src = _source(tmp_path)
    wrong = "0" * 64 if field == "sha256" else "abc123"
    spec = _spec(src.as_uri(), **{field: wrong})
    dest = tmp_path / "dest"
    with pytest.raises(WeightsError) as info:
        download(spec, dest, progress=False)
    message = str(info.value)
    algo = "sha256" if field == "sha256" else "md5"
    actual = (hashlib.sha256 if field == "sha256" else hashlib.md5)(PAYLOAD).hexdigest()
    assert "test_file.pth" in message
    assert f"expected {algo} {wrong}" in message
    assert actual in message
    assert list(dest.iterdir()) == []


def test_download_missing_source_leaves_nothing(tmp_path: Path, no_network: list[str]) -> None:
    spec = _spec((tmp_path / "absent.bin").as_uri())
    dest = tmp_path / "dest"
    with pytest.raises(WeightsError, match=r"cannot download test_file\.pth"):
        download(spec, dest, progress=False)
    assert not dest.exists()  # the missing source is found before anything is created


def test_download_interrupted_removes_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _source(tmp_path, PAYLOAD * 200)  # several 1 MiB chunks
    spec = _spec(src.as_uri())
    dest = tmp_path / "dest"
    real_update = weights._Digests.update
    calls = {"n": 0}

    def interrupt(self: weights._Digests, chunk: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            assert (dest / ".test_file.pth.part").exists()
            raise KeyboardInterrupt
        real_update(self, chunk)

    monkeypatch.setattr(weights._Digests, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        download(spec, dest, progress=False)
    assert list(dest.iterdir()) == []


def test_download_keeps_old_file_on_failure(tmp_path: Path, no_network: list[str]) -> None:
    src = _source(tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "test_file.pth").write_bytes(b"old")
    with pytest.raises(WeightsError):
        download(_spec(src.as_uri(), sha256="0" * 64), dest, progress=False)
    assert (dest / "test_file.pth").read_bytes() == b"old"
    assert sorted(p.name for p in dest.iterdir()) == ["test_file.pth"]


def test_download_uses_env_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[str]
) -> None:
    src = _source(tmp_path)
    spec = _spec("https://example.invalid/never.pth")
    monkeypatch.setenv("SAMADAPTER_URL_TEST_FILE", src.as_uri())
    path = download(spec, tmp_path / "dest", progress=False)
    assert path.read_bytes() == PAYLOAD
    assert no_network == [src.as_uri()]


def test_download_without_url() -> None:
    with pytest.raises(WeightsError, match="SAMADAPTER_URL_TEST_FILE"):
        download(_spec(None), Path.cwd(), progress=False)


def test_download_with_progress_bar(tmp_path: Path, no_network: list[str]) -> None:
    src = _source(tmp_path)
    path = download(_spec(src.as_uri()), tmp_path / "dest", progress=True)
    assert path.read_bytes() == PAYLOAD


# ------------------------------------------------------------------ resolve


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, WeightSpec]:
    src = _source(tmp_path)
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    specs = {
        "one": _spec(src.as_uri(), name="one", filename="one.pth", sha256=sha),
        "two": _spec("https://example.invalid/two.pth", name="two", filename="two.pth"),
    }
    for name, spec in specs.items():
        monkeypatch.setitem(REGISTRY, name, spec)
    return specs


def test_resolve_offline_reports_all_missing_in_one_error(
    tmp_path: Path, fake_registry: dict[str, WeightSpec], no_network: list[str]
) -> None:
    with pytest.raises(WeightsError) as info:
        resolve_weights(["one", "two"], offline=True, progress=False)
    message = str(info.value)
    home = tmp_path / "home"
    assert message.startswith("2 weight files are missing (offline mode): ")
    assert f"one.pth from {fake_registry['one'].url} -> put it at {home / 'one.pth'}" in message
    assert f"two.pth from https://example.invalid/two.pth -> put it at {home / 'two.pth'}" in (
        message
    )
    # Both missing files are adapters: the hint names the flag for that kind only.
    assert "--weights-dir DIR" in message and "--adapter-checkpoint PATH" in message
    assert "--sam-checkpoint" not in message and "--clip-checkpoint" not in message
    assert "\n" not in message
    assert no_network == []


def test_missing_files_hint_names_the_flag_of_each_missing_kind(
    fake_registry: dict[str, WeightSpec], monkeypatch: pytest.MonkeyPatch, no_network: list[str]
) -> None:
    # `classify` has no --sam-checkpoint: a hint must not offer it when no SAM file is missing.
    monkeypatch.setitem(REGISTRY, "s", _spec(None, name="s", kind="sam", filename="s.pth"))
    monkeypatch.setitem(REGISTRY, "c", _spec(None, name="c", kind="clip", filename="c.bin"))
    with pytest.raises(WeightsError) as info:
        resolve_weights(["s", "two", "c"], offline=True, progress=False)
    assert str(info.value).endswith(
        "(download them on a machine with internet, or pass "
        "--weights-dir DIR / --sam-checkpoint PATH / "
        "--adapter-checkpoint PATH / --clip-checkpoint PATH)"
    )
    with pytest.raises(WeightsError) as info:
        resolve_weights(["c"], offline=True, progress=False)
    assert str(info.value).endswith("--weights-dir DIR / --clip-checkpoint PATH)")
    assert no_network == []


def test_resolve_offline_from_env_and_weights_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_registry: dict[str, WeightSpec]
) -> None:
    monkeypatch.setenv("SAMADAPTER_OFFLINE", "1")
    mine = tmp_path / "mine"
    with pytest.raises(WeightsError) as info:
        resolve_weights(["one"], weights_dir=mine, progress=False)
    assert f"put it at {mine / 'one.pth'}" in str(info.value)
    assert "1 weight file is missing (offline mode)" in str(info.value)


def test_resolve_finds_present_files(
    tmp_path: Path, fake_registry: dict[str, WeightSpec], no_network: list[str]
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "two.pth").write_bytes(b"two")
    (mine / "one.pth").write_bytes(b"one")
    got = resolve_weights(["one", "two"], weights_dir=mine, offline=True)
    assert got == {"one": mine / "one.pth", "two": mine / "two.pth"}


def test_resolve_downloads_and_collects_failures(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_registry: dict[str, WeightSpec],
    no_network: list[str],
) -> None:
    dead = (tmp_path / "dead" / "two.pth").as_uri()
    monkeypatch.setenv("SAMADAPTER_URL_TWO", dead)
    with pytest.raises(WeightsError) as info:
        resolve_weights(["one", "two"], progress=False)
    message = str(info.value)
    home = tmp_path / "home"
    assert message.startswith(f"1 weight file is missing: two.pth from {dead} -> put it at ")
    assert f"put it at {home / 'two.pth'} (download failed: " in message
    assert "No such file" in message and message.count(dead) == 1  # the URL is named once
    assert (home / "one.pth").read_bytes() == PAYLOAD
    assert sorted(p.name for p in home.iterdir()) == [".one.pth.sha256.json", "one.pth"]
    assert resolve_weights(["one"], offline=True) == {"one": home / "one.pth"}


def test_resolve_unknown_name() -> None:
    with pytest.raises(ConfigError, match="unknown weights name 'nope'"):
        resolve_weights(["nope"], offline=True)


def test_file_checksum_is_remembered_until_the_file_changes(tmp_path: Path) -> None:
    from samadapter.weights import file_checksum

    f = tmp_path / "w.pth"
    f.write_bytes(b"abc")
    assert file_checksum(f) == hashlib.sha256(b"abc").hexdigest()
    assert (tmp_path / ".w.pth.sha256.json").exists()
    f.write_bytes(b"abcd")
    assert file_checksum(f) == hashlib.sha256(b"abcd").hexdigest()


# ------------------------------------------------------------------ local mirrors and records


def test_plain_path_override_is_copied_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[str]
) -> None:
    src = _source(tmp_path)
    spec = _spec("https://example.invalid/never.pth", sha256=hashlib.sha256(PAYLOAD).hexdigest())
    monkeypatch.chdir(src.parent)
    monkeypatch.setenv("SAMADAPTER_URL_TEST_FILE", "payload.bin")  # relative to the cwd
    assert effective_url(spec) == src.as_uri()
    assert download(spec, tmp_path / "dest", progress=False).read_bytes() == PAYLOAD
    monkeypatch.setenv("SAMADAPTER_URL_TEST_FILE", str(src))
    assert download(spec, tmp_path / "dest2", progress=False).read_bytes() == PAYLOAD
    bad = _spec("https://example.invalid/never.pth", sha256="0" * 64)
    with pytest.raises(WeightsError, match="checksum mismatch"):
        download(bad, tmp_path / "dest3", progress=False)


@pytest.mark.parametrize(
    "value, match",
    [
        ("{missing}", r"No such file: .*absent\.bin \(fix SAMADAPTER_URL_TEST_FILE"),
        ("file://{missing}", r"No such file: .*absent\.bin"),
        ("{folder}", r"src is a folder \(name the file itself"),
        ("file://relative/x.pth", r"a file:// URL needs an absolute path \(file:///path/to/"),
    ],
)
def test_bad_local_override_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, match: str
) -> None:
    folder = _source(tmp_path).parent
    monkeypatch.setenv(
        "SAMADAPTER_URL_TEST_FILE", value.format(missing=tmp_path / "absent.bin", folder=folder)
    )
    with pytest.raises(WeightsError, match=match) as info:
        download(_spec("https://example.invalid/x.pth"), tmp_path / "dest", progress=False)
    assert "\n" not in str(info.value) and not (tmp_path / "dest").exists()


def test_download_records_sha256_and_later_changes_are_caught(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_registry: dict[str, WeightSpec],
    no_network: list[str],
) -> None:
    spec = dataclasses.replace(fake_registry["one"], sha256=None)  # no published checksum
    monkeypatch.setitem(REGISTRY, "one", spec)
    path = resolve_weights(["one"], progress=False)["one"]
    assert path is not None
    assert weights.recorded_sha256(path) == hashlib.sha256(PAYLOAD).hexdigest()
    assert verify_file(path, spec) == "sha256 recorded at download"
    assert resolve_weights(["one"], offline=True) == {"one": path}  # unchanged: fine
    path.write_bytes(PAYLOAD[:-1] + b"!")  # same size, other content
    os.utime(path, ns=(1, 1))
    with pytest.raises(WeightsError, match="changed since it was downloaded") as info:
        resolve_weights(["one"], offline=True)
    assert "weights download one" in str(info.value)
    with pytest.raises(WeightsError, match=r"recorded sha256 [0-9a-f]{64}, now [0-9a-f]{64}"):
        verify_file(path, spec)
    # the record survives the digest cache being refreshed
    assert weights.recorded_sha256(path) == hashlib.sha256(PAYLOAD).hexdigest()
    hand_placed = tmp_path / "other.pth"
    hand_placed.write_bytes(PAYLOAD)
    assert verify_file(hand_placed, spec) == "unverified"
    assert verify_file(hand_placed, fake_registry["one"]) == "sha256"


def test_damaged_sidecar_is_ignored(tmp_path: Path) -> None:
    f = tmp_path / "w.pth"
    f.write_bytes(b"abc")
    (tmp_path / ".w.pth.sha256.json").write_text("[1, 2")
    assert weights.recorded_sha256(f) is None
    assert weights.file_checksum(f) == hashlib.sha256(b"abc").hexdigest()
    (tmp_path / ".w.pth.sha256.json").write_text('{"downloaded": {"sha256": "not hex"}}')
    assert weights.recorded_sha256(f) is None
