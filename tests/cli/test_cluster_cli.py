"""``--ray``: segment and classify on a real local Ray write what the local commands write."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from readers import real_reader  # tests/readers.py (tests/ is on sys.path)
from typer.testing import CliRunner

from samadapter.cli.main import app

ray = real_reader("ray")  # CI installs the ray extra: missing there is an error, not a skip

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
# One torch thread in both runs: sums over other thread counts can differ in the last bits.
TINY = ["--preset", "tiny-random", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray for the module; the commands join it (start-up takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "240"})
    return result.exit_code, result.stderr


def files(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in ("run.json", ".samadapter.lock")
    }


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(SAMPLES / "chelsea.jpg", root / "a.jpg")
    Image.open(SAMPLES / "coffee.jpg").resize((96, 64)).save(root / "b.png")
    return root


def test_segment_on_ray_writes_the_local_commands_files(
    local_ray: None, photos: Path, tmp_path: Path
) -> None:
    common = [photos, "--classes", "cat,cup,table", *TINY, "--format", "coco,yolo-seg"]
    code, stderr = run("segment", *common, "-o", tmp_path / "local")
    assert code == 0, stderr
    code, stderr = run("segment", *common, "-o", tmp_path / "ray", "--ray", "local")
    assert code == 0, stderr
    assert "Ray: 1 actor(s) of 1 CPU on 1 node(s)" in stderr
    assert "a.jpg" in stderr and "b.png" in stderr
    assert "INFO" not in stderr and "streaming_executor" not in stderr  # Ray kept quiet
    local, remote = files(tmp_path / "local"), files(tmp_path / "ray")
    assert sorted(remote) == sorted(local) and len(local) > 10
    assert [name for name in local if local[name] != remote[name]] == []
    # A rerun, local or on Ray, finds everything finished.
    code, stderr = run("segment", *common, "-o", tmp_path / "ray")
    assert code == 0 and "0 done, 2 skipped" in stderr


def test_classify_on_ray_writes_the_local_commands_files(
    local_ray: None, photos: Path, tmp_path: Path
) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    for name, size in (("a", (451, 300)), ("b", (96, 64))):
        label = Image.new("L", size, 0)
        label.paste(1, (4, 4, size[0] // 2, size[1] // 2))
        label.paste(2, (size[0] // 2, size[1] // 3, size[0] - 2, size[1] - 2))
        label.save(masks / f"{name}.png")
    common = [photos, "--masks", masks, "--classes", "cat,cup,table", *TINY[2:]]
    code, stderr = run("classify", *common, "--preset", "tiny-random", "-o", tmp_path / "local")
    assert code == 0, stderr
    code, stderr = run(
        "classify", *common, "--preset", "tiny-random", "-o", tmp_path / "ray", "--ray", "local"
    )
    assert code == 0, stderr
    local, remote = files(tmp_path / "local"), files(tmp_path / "ray")
    assert sorted(remote) == sorted(local) and len(local) > 5
    assert [name for name in local if local[name] != remote[name]] == []


def test_relabel_on_ray_writes_the_local_commands_files(
    local_ray: None, photos: Path, tmp_path: Path
) -> None:
    code, stderr = run(
        "segment", photos, "--classes", "cat,cup", *TINY, "--cache-features", "-o", tmp_path / "a"
    )
    assert code == 0, stderr
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    relabel = ["--classes", "dog,table,mug", "--device", "cpu", "--threads", "1"]
    code, stderr = run("relabel", tmp_path / "a", *relabel)
    assert code == 0, stderr
    code, stderr = run("relabel", tmp_path / "b", *relabel, "--ray", "local")
    assert code == 0, stderr
    local, remote = files(tmp_path / "a"), files(tmp_path / "b")
    assert sorted(remote) == sorted(local) and len(local) > 5
    assert [name for name in local if local[name] != remote[name]] == []
    assert b"mug" in local["annotations.json"]


def test_ray_without_the_extra_is_one_line_naming_it(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    code, stderr = run(
        "segment", photos, "--classes", "cat", *TINY, "-o", tmp_path / "o", "--ray", "auto"
    )
    assert code == 2
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == [
        "error: --ray needs Ray Data, which is not installed (pip install 'samadapter[ray]')"
    ]
