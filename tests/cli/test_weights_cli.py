"""Tests of ``samadapter weights list / download / verify`` (offline)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from samadapter.cli.weights import app
from samadapter.weights import REGISTRY, WeightSpec

PAYLOAD = b"weights for the cli tests\n" * 100


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAMADAPTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SAMADAPTER_OFFLINE", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def good_spec(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> WeightSpec:
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    spec = WeightSpec(
        name="cli_test",
        kind="adapter",
        filename="cli_test.pth",
        url=src.as_uri(),
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
    )
    monkeypatch.setitem(REGISTRY, spec.name, spec)
    return spec


def test_list_shows_registry(runner: CliRunner, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "sam_vit_b_01ec64.pth").write_bytes(b"x")
    result = runner.invoke(app, ["list", "--table"])
    assert result.exit_code == 0, result.output
    assert "sam_vit_b" in result.output
    assert "sam_vit_b_01ec64.pth" in result.output
    assert "375.0 MB" in result.output
    rows = {line.split()[1]: line for line in result.output.splitlines() if line.startswith("│ ")}
    assert " yes " in rows["sam_vit_b"] and " no " in rows["sam_vit_l"]
    assert " yes " in rows["maftp_convnext_large"] and " yes " in rows["maftp_convnext_base"]
    assert "maftp_convnext_large: MAFTP-Large + Mask-Adapter" in result.output
    flat = result.output.replace("\n", "").replace("│", "").replace(" ", "")
    assert str(home / "sam_vit_b_01ec64.pth").replace(" ", "") in flat


def test_list_piped_is_one_unwrapped_line_per_entry(runner: CliRunner, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "sam_vit_b_01ec64.pth").write_bytes(b"x")
    result = runner.invoke(app, ["list"])  # CliRunner's stdout is not a terminal
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split("\t") == ["name", "kind", "size", "present", "file", "supported", "note"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert all(len(row) == 7 for row in rows.values())
    assert rows["sam_vit_b"][1:5] == ["sam", "375.0 MB", "yes", str(home / "sam_vit_b_01ec64.pth")]
    assert rows["sam_vit_l"][3:5] == ["no", "sam_vit_l_0b3195.pth"]
    assert rows["maftp_convnext_large"][5] == "yes"
    assert len(lines) == len(rows) + 1  # nothing wrapped onto extra lines


def test_verify_good_bad_missing(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, good_spec: WeightSpec
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / good_spec.filename).write_bytes(PAYLOAD)
    result = runner.invoke(app, ["verify", "cli_test", "sam_vit_b", "--weights-dir", str(mine)])
    assert result.exit_code == 0, result.output
    assert "OK      cli_test" in result.output and "(sha256)" in result.output
    assert "missing sam_vit_b" in result.output

    (mine / "sam_vit_b_01ec64.pth").write_bytes(b"not sam at all")
    result = runner.invoke(app, ["verify", "cli_test", "sam_vit_b", "--weights-dir", str(mine)])
    assert result.exit_code == 1, result.output
    assert "OK      cli_test" in result.output
    assert "BAD     sam_vit_b" in result.output
    assert hashlib.md5(b"not sam at all").hexdigest() in result.output


def test_verify_unknown_name_is_one_error_line(runner: CliRunner) -> None:
    result = runner.invoke(app, ["verify", "nope"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: unknown weights name 'nope'; valid names: ")


def test_download_then_present(runner: CliRunner, tmp_path: Path, good_spec: WeightSpec) -> None:
    mine = tmp_path / "mine"
    args = ["download", "cli_test", "--weights-dir", str(mine), "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (mine / "cli_test.pth").read_bytes() == PAYLOAD
    assert f"cli_test: {mine / 'cli_test.pth'}" in result.output
    result = runner.invoke(app, ["download", "cli_test", "--weights-dir", str(mine)])
    assert result.exit_code == 0, result.output


def test_download_failure_is_one_error_line(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, good_spec: WeightSpec
) -> None:
    monkeypatch.setenv("SAMADAPTER_OFFLINE", "1")
    result = runner.invoke(app, ["download", "cli_test", "--no-progress"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: 1 weight file is missing (offline mode): cli_test.pth")
    assert str(tmp_path / "home" / "cli_test.pth") in lines[0]


def test_download_unsupported(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    old = dataclasses.replace(
        REGISTRY["demo"], name="old_thing", supported=False, note="cannot load this yet"
    )
    monkeypatch.setitem(REGISTRY, old.name, old)
    result = runner.invoke(app, ["download", "old_thing"])
    assert result.exit_code == 2
    assert "not supported" in result.stderr


def test_verify_says_unverified_without_a_checksum_and_ok_after_a_download(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, good_spec: WeightSpec
) -> None:
    import dataclasses

    spec = dataclasses.replace(good_spec, sha256=None)
    monkeypatch.setitem(REGISTRY, spec.name, spec)
    hand = tmp_path / "hand"
    hand.mkdir()
    (hand / spec.filename).write_bytes(PAYLOAD)
    result = runner.invoke(app, ["verify", "cli_test", "--weights-dir", str(hand)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("unverified cli_test: ")
    assert "no published checksum" in result.output and "OK" not in result.output

    got = tmp_path / "got"
    assert (
        runner.invoke(
            app, ["download", "cli_test", "--weights-dir", str(got), "--no-progress"]
        ).exit_code
        == 0
    )
    result = runner.invoke(app, ["verify", "cli_test", "--weights-dir", str(got)])
    assert result.exit_code == 0, result.output
    assert "OK      cli_test" in result.output
    assert "(sha256 recorded at download)" in result.output
    (got / spec.filename).write_bytes(PAYLOAD + b"tampered")
    result = runner.invoke(app, ["verify", "cli_test", "--weights-dir", str(got)])
    assert result.exit_code == 1
    assert "BAD     cli_test" in result.output and "changed since it was downloaded" in (
        result.output.replace("\n", " ")
    )
