"""``samadapter app`` end to end in headless Chromium (Playwright, the system browser)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from samadapter.app.server import App

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "chelsea.jpg"

TIMEOUT = 60_000  # ms: the tiny models on a busy 2-core machine


def table_classes(page: Any, table: str = "masks") -> list[str]:
    cells = page.locator(f"[data-testid={table}] tbody tr td:nth-child(2)")
    return [text.strip() for text in cells.all_inner_texts()]


def test_try_a_photo_then_relabel_without_sam(
    page: Any, served: tuple[str, App], tmp_path: Path
) -> None:
    url, app = served
    proposer = app.labeller.base.proposer
    page.goto(url)
    page.set_input_files("[data-testid=file]", str(SAMPLE))
    page.fill("[data-testid=keep]", "0")  # every mask, so the table lists them all
    page.fill("[data-testid=classes]", "tabby,armchair")
    page.click("[data-testid=segment]")
    page.wait_for_function(
        "document.querySelector('[data-testid=overlay]').naturalWidth > 0", timeout=TIMEOUT
    )
    page.wait_for_selector("[data-testid=masks] tbody tr", timeout=TIMEOUT)
    first = table_classes(page)
    assert first and set(first) <= {"tabby", "armchair"}
    assert proposer.calls == 1
    width = page.evaluate("document.querySelector('[data-testid=overlay]').naturalWidth")
    assert width == 451  # chelsea.jpg is 451x300

    page.fill("[data-testid=classes]", "dog,tree")
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=masks] tbody td:nth-child(2)')]"
        ".every(td => ['dog', 'tree'].includes(td.textContent.trim()))",
        timeout=TIMEOUT,
    )
    second = table_classes(page)
    assert len(second) == len(first) and set(second) <= {"dog", "tree"}
    assert proposer.calls == 1  # relabelled from the kept features: SAM did not run again
    assert app.relabels >= 1

    page.click("[data-testid=masks] tbody tr")  # the first mask: its top classes
    page.wait_for_selector("[data-testid=top5] td", timeout=TIMEOUT)
    top = page.locator("[data-testid=top5] td:first-child").all_inner_texts()
    assert sorted(top) == ["dog", "tree"]

    page.fill("[data-testid=classes]", "dog,Dog")
    page.wait_for_function(
        "document.querySelector('[data-testid=error]').textContent.includes('duplicate')",
        timeout=TIMEOUT,
    )
    assert "Traceback" not in page.content()
    page.screenshot(path=str(tmp_path / "photo.png"))
    assert (tmp_path / "photo.png").stat().st_size > 1000


def test_a_non_image_upload_is_one_message(
    page: Any, served: tuple[str, App], tmp_path: Path
) -> None:
    url, app = served
    bogus = tmp_path / "notes.jpg"
    bogus.write_text("not a photo")
    page.goto(url)
    page.set_input_files("[data-testid=file]", str(bogus))
    page.click("[data-testid=segment]")
    page.wait_for_function(
        "document.querySelector('[data-testid=error]').textContent.length > 0", timeout=TIMEOUT
    )
    error = page.inner_text("[data-testid=error]")
    assert "notes.jpg is not an image" in error
    assert app.labeller.base.proposer.calls == 0


def test_browse_a_run_and_filter_by_class(
    page: Any, served: tuple[str, App], run_copy: Path, tmp_path: Path
) -> None:
    url, _ = served
    page.goto(url)
    page.click("[data-testid=tab-run]")
    page.fill("[data-testid=folder]", str(run_copy))
    page.click("[data-testid=open-run]")
    page.wait_for_selector("[data-testid=thumb]", timeout=TIMEOUT)
    assert page.locator("[data-testid=thumb]").count() == 2
    counts = page.locator("[data-testid=counts] tbody tr").all_inner_texts()
    assert [row.split("\t") for row in counts] == [["dog", "1", "1"], ["plate", "1", "1"]]
    names = page.locator("[data-testid=filters] button").all_inner_texts()
    assert names == ["all", "dog", "plate"]
    page.click("[data-testid=filters] button[data-class='plate']")
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=thumb]').length === 1", timeout=TIMEOUT
    )
    assert "coffee.jpg" in page.inner_text("[data-testid=thumb]")
    page.locator("[data-testid=thumb]").first.click()
    page.wait_for_selector("[data-testid=run-masks] tbody tr", timeout=TIMEOUT)
    assert table_classes(page, "run-masks") == ["plate"]
    page.click("[data-testid=run-photo]")  # the same image in the photo view, from its cache
    page.wait_for_function(
        "document.querySelector('[data-testid=masks] tbody td:nth-child(2)')"
        "?.textContent.trim() === 'plate'",
        timeout=TIMEOUT,
    )
    page.click("[data-testid=tab-run]")
    page.click("[data-testid=filters] button[data-class='all']")
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=thumb]').length === 2", timeout=TIMEOUT
    )
    page.screenshot(path=str(tmp_path / "run.png"))
    assert (tmp_path / "run.png").stat().st_size > 1000
