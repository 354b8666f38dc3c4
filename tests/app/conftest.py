"""Fixtures of the app's tests: the tiny random models with a proposer that counts its calls, a
served app on a free local port, a run folder made with ``--cache-features``, and a headless
Chromium (Debian's ``chromium`` driven by Playwright)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from samadapter.app.server import App, serving
from samadapter.cli.main import app as cli
from samadapter.pipeline import Segmenter

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "chelsea.jpg"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


class CountingProposer:
    """Wraps a proposer and counts how often SAM ran."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.settings = inner.settings
        self.calls = 0

    def __call__(self, image: np.ndarray) -> Any:
        self.calls += 1
        return self.inner(image)


@pytest.fixture
def counting(tiny_segmenter: Segmenter) -> Segmenter:
    """The tiny segmenter with a fresh :class:`CountingProposer` (``.proposer.calls``)."""
    return dataclasses.replace(tiny_segmenter, proposer=CountingProposer(tiny_segmenter.proposer))


@pytest.fixture
def served(counting: Segmenter) -> Iterator[tuple[str, App]]:
    """The app on the counting tiny models, served on a free port of 127.0.0.1."""
    app = App(counting, samples=ROOT / "samples")
    with serving(app, "127.0.0.1", 0) as url:
        yield url, app


@pytest.fixture(scope="session")
def cached_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny-random run over both samples, with ``--cache-features`` (made once;
    tests that change it copy it first). The tiny models name chelsea.jpg's one mask ``dog``
    and coffee.jpg's ``plate``."""
    out = tmp_path_factory.mktemp("run") / "out"
    env = {
        "SAMADAPTER_OFFLINE": "1",
        "SAMADAPTER_HOME": str(tmp_path_factory.mktemp("home")),
        "SAMADAPTER_RUNTIME": "torch",
        "SAMADAPTER_COMPILE": "0",
    }
    result = CliRunner().invoke(
        cli,
        [
            "segment",
            str(ROOT / "samples"),
            "--classes",
            "dog,cup,plate",
            "--keep-ratio",
            "0",
            "--preset",
            "tiny-random",
            "--device",
            "cpu",
            "-o",
            str(out),
            "--cache-features",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture
def run_copy(cached_run: Path, tmp_path: Path) -> Path:
    """A private copy of :func:`cached_run`."""
    target = tmp_path / "run"
    shutil.copytree(cached_run, target)
    return target


def chromium_path() -> str | None:
    """Debian's Chromium (or another system Chrome), or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    """A Playwright page in headless system Chromium. Skipped when Chromium or Playwright is
    missing, except under CI (``CI=true``), where ``.ci/run`` installs both."""
    in_ci = os.environ.get("CI", "").lower() in ("1", "true")
    executable = chromium_path()
    if executable is None and not in_ci:
        pytest.skip(
            "no system chromium (apt-get install chromium; see scripts/install-test-deps.sh)"
        )
    assert executable is not None, "CI must have chromium (scripts/install-test-deps.sh)"
    if in_ci:
        from playwright.sync_api import sync_playwright
    else:
        sync_api = pytest.importorskip("playwright.sync_api")
        sync_playwright = sync_api.sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            yield context.new_page()
        finally:
            browser.close()
