"""`python app.py` as shipped: the bundled weights and the examples, in Debian's Chromium.

This is the README's first promise: on a fresh install the app super-resolves a real scan with
what is in ``checkpoints/`` and ``examples/``, without any download. The README's screenshot
of the Super-resolve tab is taken here (``TRANSMRSR_UPDATE_SCREENSHOT=1``).
"""

from __future__ import annotations

import os
import re

import pytest

from apphelpers import REPO, running_app, viewer_panel

SCREENSHOT = REPO / "docs" / "super-resolve-tab.png"


@pytest.fixture(scope="module")
def shipped_app(tmp_path_factory):
    for scale in (4, 8):
        weights = REPO / "checkpoints" / f"transmrsr-small-t1-x{scale}" / "model.safetensors"
        assert weights.is_file(), f"{weights} is missing: the app must run on bundled weights"
    with running_app(tmp_path_factory.mktemp("work")) as app:
        yield app


def _metric(page, method: str) -> float:
    """Whole-volume PSNR (the first number after the method's name) in the page's metrics table."""
    text = page.locator("#metrics").inner_text()
    found = re.search(re.escape(method) + r"\s+(-?\d+(?:\.\d+)?)", text)
    assert found, f"no {method} row with numbers in the metrics table: {text!r}"
    return float(found.group(1))


def test_example_with_bundled_weights_and_bad_upload(shipped_app, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1500, "height": 1150})
    page.goto(shipped_app.url)

    # the examples list the held-out subject's volumes, never the mask
    examples = page.locator("#volume-examples")
    expect(examples).to_contain_text("icbm152_t1_1mm.nii.gz", timeout=30_000)
    expect(examples).not_to_contain_text("brainmask")
    examples.get_by_text("icbm152_t1_1mm.nii.gz").click()
    expect(page.locator("#volume-upload")).to_contain_text("icbm152_t1_1mm", timeout=60_000)
    page.locator("#scale").get_by_text("8", exact=True).click()
    page.locator("#run").click()
    # the four panels, or (failing fast) an error message
    done = page.locator(viewer_panel("error")).or_(page.locator(".toast-body"))
    expect(done.first).to_be_visible(timeout=600_000)
    assert page.locator(".toast-body").count() == 0, page.locator(".toast-body").all_inner_texts() + [shipped_app.log()]
    for panel in ("lr", "sr", "hr", "error"):
        expect(page.locator(viewer_panel(panel))).to_be_visible(timeout=30_000)
    expect(page.locator("#case-info")).to_contain_text("×8", timeout=30_000)
    expect(page.locator("#metrics")).to_contain_text("cubic")
    # the shipped x8 model beats cubic interpolation on the held-out subject, as its card says
    assert _metric(page, "TransMRSR") > _metric(page, "cubic")
    expect(page.locator(".pending")).to_have_count(0, timeout=60_000)
    page.wait_for_timeout(1000)
    shot = tmp_path / "super-resolve.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("TRANSMRSR_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(shot.read_bytes())

    # the About tab shows the card of the weights in use
    page.get_by_role("tab", name="About").click()
    expect(page.locator("#model-card")).to_contain_text("held-out", timeout=30_000)

    # a broken upload: one clear message in the page, no stack trace; the new upload clears the stale result
    page.get_by_role("tab", name="Super-resolve").click()
    bad = tmp_path / "scan.nii.gz"
    bad.write_bytes(b"not a NIfTI file at all")
    page.locator("#volume-upload").get_by_role("button", name="Clear").click()
    page.locator("#volume-upload input[type=file]").set_input_files(str(bad))
    page.locator("#run").click()
    toast = page.locator(".toast-body")
    expect(toast.first).to_contain_text("scan.nii.gz", timeout=60_000)
    expect(toast.first).to_contain_text(re.compile("NIfTI"))
    assert "Traceback" not in page.content() and "/tmp/" not in toast.first.inner_text()
    expect(page.locator(viewer_panel("sr"))).to_have_count(0)
    expect(page.locator("#run")).to_be_enabled()
    page.close()
