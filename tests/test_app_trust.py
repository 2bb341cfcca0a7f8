"""The trust layer in the app (issue #18): the consistency and uncertainty maps of a run as overlays,
summaries and NIfTI downloads in the Super-resolve tab; in the Annotate tab the uncertainty overlay
only after rating, the readers' painted hallucination flags against the map in the export, and
radiological reader images (an RAS and an LAS file of the same phantom give the same picture).

Tiny model (``tiny_dir``), a 24x28x24 phantom: one server, one page, two runs.
"""

from __future__ import annotations

import base64
import csv
import io

import nibabel as nib
import numpy as np
import pytest

from transmrsr.annotations import AnnotationStore, Reading
from transmrsr.studio import Case, painted_region, reader_image

from apphelpers import CROSS, VV, canvas_rgb, fetch, run_file, running_app

SHAPE = (24, 28, 24)
MARKER = (slice(16, 21), slice(12, 18), slice(10, 16))  # voxels (RAS): the patient's right of the centre


def phantom() -> tuple[np.ndarray, np.ndarray]:
    """A smooth head (many distinct values: no label-map warning) with a bright marker on its right."""
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in SHAPE), indexing="ij")
    r2 = ((x - 11.5) / 10) ** 2 + ((y - 13.5) / 12) ** 2 + ((z - 11.5) / 10) ** 2
    vol = np.where(r2 <= 1, 80.0 + 20.0 * np.cos(3 * r2) + 0.5 * y, 0.0).astype(np.float32)
    vol[MARKER] = 300.0
    affine = np.eye(4)
    affine[:3, 3] = [-12, -14, -12]
    return vol, affine


def las(vol: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same anatomy with the voxel x axis reversed (the affine says so)."""
    a = affine.copy()
    a[0, 0], a[0, 3] = -1.0, affine[0, 3] + vol.shape[0] - 1
    return np.ascontiguousarray(vol[::-1]), a


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trust")
    vol, affine = phantom()
    nib.save(nib.Nifti1Image(vol, affine), folder / "ras_head.nii.gz")
    v2, a2 = las(vol, affine)
    nib.save(nib.Nifti1Image(v2, a2), folder / "las_head.nii.gz")
    assert nib.aff2axcodes(a2) == ("L", "A", "S")
    return folder


# ---------------------------------------------------------------------------------------- no server
def _case(vol: np.ndarray, affine: np.ndarray, tmp_path) -> Case:
    return Case(
        name="p", axis=2, factor=4, slice_axis=1, phi=0.9, zooms=(1.0, 1.0, 1.0), affine=affine,
        interp=vol, sr=vol, hr=None, scaler=None, sr_path=tmp_path / "p_sr.nii.gz", simulated=False,
    )  # fmt: skip


@pytest.mark.parametrize("order", ["ras", "las"])
def test_reader_image_is_radiological_and_paint_maps_back_to_the_voxels(order, tmp_path):
    vol, affine = phantom()
    if order == "las":
        vol, affine = las(vol, affine)
    case = _case(vol, affine, tmp_path)
    case.window = (0.0, 300.0)
    for plane in ("axial", "coronal"):
        axis = {"axial": 2, "coronal": 1}[plane]
        pic = reader_image(case, None, plane, 13, 0.9)
        cols = np.nonzero((pic[..., 0] > 200).any(axis=0))[0]
        assert cols.size and cols.max() < pic.shape[1] / 2, f"{order} {plane}: the patient's right must be on the left"
        painted = pic[..., 0] > 200  # the reader paints exactly the marker
        region = painted_region(case, plane, painted)
        store = AnnotationStore(tmp_path / f"{plane}.sqlite")
        ann = store.add(Reading("r", "p", plane, 13, "cubic", 3), region, case.shape, case.affine, tmp_path / plane)
        labels = np.asarray(nib.load(str(store.label_files(tmp_path / plane)[0])).dataobj)
        want = np.zeros(vol.shape, bool)
        idx = [slice(None)] * 3
        idx[axis] = 13
        want[tuple(idx)] = (vol > 200)[tuple(idx)]
        assert np.array_equal(labels == ann, want), (order, plane)


# ---------------------------------------------------------------------------------------- the real app
@pytest.fixture(scope="module")
def server(tiny_dir, tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("work"), tiny_dir, args=["--study-operator"]) as app:
        yield app


@pytest.fixture(scope="module")
def page(server, browser, files, one_torch_thread):
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(server.url)
    run_file(page, files / "ras_head.nii.gz")
    yield page
    page.close()


def nifti(url: str, tmp_path, name: str) -> nib.Nifti1Image:
    path = tmp_path / name
    path.write_bytes(fetch(url))
    img = nib.load(str(path))
    img.get_fdata()  # read now, while the file is there
    return img


def image_rgb(page, sel: str) -> np.ndarray:
    """The picture a gr.Image shows (fetched from its src), ``(H, W, 3)``."""
    from PIL import Image

    src = page.locator(f"{sel} img").first.get_attribute("src")
    data = base64.b64decode(src.split(",", 1)[1]) if src.startswith("data:") else fetch(src)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def coloured(img: np.ndarray) -> int:
    a = img.astype(int)
    colour = (a[..., 0] != a[..., 1]) | (a[..., 1] != a[..., 2])
    return int((colour & ~np.all(a == CROSS, axis=2)).sum())


def test_run_makes_both_maps_as_overlays_summaries_and_downloads(page, tmp_path):
    from playwright.sync_api import expect

    summary = page.locator("#trust-summary")
    expect(summary).to_contain_text("Data consistency")
    expect(summary).to_contain_text("% of the intensity range")
    expect(summary).to_contain_text("Uncertainty")
    expect(summary).to_contain_text("95th percentile")
    # the downloads: both maps as NIfTI on the SR grid with the SR's affine
    links = page.locator("#trust-download a")
    expect(links).to_have_count(2, timeout=30_000)
    hrefs = [links.nth(i).get_attribute("href") for i in range(2)]
    assert any("consistency" in h for h in hrefs) and any("uncertainty" in h for h in hrefs)
    sr = nifti(page.locator("#download a").first.get_attribute("href"), tmp_path, "sr.nii.gz")
    for i, href in enumerate(hrefs):
        img = nifti(href, tmp_path, f"map{i}.nii.gz")
        assert img.shape == sr.shape == SHAPE
        np.testing.assert_allclose(img.affine, sr.affine, atol=1e-6)
        data = np.asarray(img.dataobj, dtype=np.float32)
        assert np.isfinite(data).all() and data.min() >= 0 and data.max() > 0
    # the overlay selector lists |SR − HR| (an isotropic upload has an HR), consistency and uncertainty
    opts = page.locator(f"{VV} [data-ctl='overlay'] option")
    keys = [opts.nth(i).get_attribute("value") for i in range(opts.count())]
    assert keys == ["", "error-overlay", "consistency", "uncertainty"], keys
    page.locator(f"{VV} [data-ctl='layout']").select_option("compare")
    sr_canvas = page.locator(f"{VV} .vv-cell[data-layer='sr'][data-plane='coronal'] canvas")
    plain = canvas_rgb(sr_canvas)
    assert coloured(plain) == 0
    drawn = {}
    for key in ("consistency", "uncertainty"):
        page.locator(f"{VV} [data-ctl='overlay']").select_option(key)
        expect(page.locator(f"{VV} .vv-cbar[data-layer='{key}']")).to_contain_text(key)
        drawn[key] = canvas_rgb(sr_canvas)
        assert coloured(drawn[key]) > 50, key
    assert not np.array_equal(drawn["consistency"], drawn["uncertainty"])
    page.locator(f"{VV} [data-ctl='opacity']").fill("0")
    assert coloured(canvas_rgb(sr_canvas)) == 0
    page.locator(f"{VV} [data-ctl='opacity']").fill("0.6")
    page.locator(f"{VV} [data-ctl='overlay']").select_option("")
    assert np.array_equal(canvas_rgb(sr_canvas), plain)


def _paint(page) -> None:
    """A brush stroke in the upper-left part of the editor's picture (the patient's right, up)."""
    box = page.locator("#ann-editor canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 60, cy - 50)
    page.mouse.down()
    page.mouse.move(cx - 40, cy - 40, steps=2)
    page.mouse.move(cx - 20, cy - 30, steps=2)
    page.mouse.up()


def test_annotate_uncertainty_only_after_rating_and_flags_in_the_export(page, server, files):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Annotate").click()
    expect(page.locator("#ann-status")).to_contain_text("coronal slice", timeout=60_000)
    expect(page.locator("#ann-image-a img")).to_be_visible()
    ras_pictures = [image_rgb(page, sel) for sel in ("#ann-image-a", "#ann-image-b")]
    toggle = page.locator("#ann-uncertainty input")
    expect(toggle).to_be_disabled()  # not before rating: it would bias the rating

    page.locator("#ann-reader input, #ann-reader textarea").first.fill("Dr. Trust")
    for i, which in enumerate(("Image A", "Image B")):
        page.locator("#ann-image").get_by_text(which, exact=True).click()
        page.locator("#ann-rating").get_by_text("3", exact=True).click()
        if i == 0:
            page.locator("#ann-hallucination input").check()
            _paint(page)
        page.locator("#ann-save").click()
        expect(page.locator("#ann-status")).to_contain_text(f"of {which}", timeout=30_000)
        if i == 0:
            expect(page.locator("#ann-status")).to_contain_text("with a region of")
            expect(toggle).to_be_disabled()  # one image rated of two: still locked
    expect(page.locator("#ann-status")).to_contain_text("Unblinded")
    expect(toggle).to_be_enabled()
    before = image_rgb(page, "#ann-image-a")
    # the picture's address is read before the toggle: read after it, a fast server may already have swapped it
    before_src = page.locator("#ann-image-a img").get_attribute("src")
    toggle.check()
    page.wait_for_function(
        "src => document.querySelector('#ann-image-a img').getAttribute('src') !== src",
        arg=before_src,
        timeout=30_000,
    )
    after = image_rgb(page, "#ann-image-a")
    assert coloured(before) == 0 and coloured(after) > 50

    # the operator: the per-case table and the CSV relate the flag to the map
    page.get_by_text("Study operator: pooled results and exports").click()
    page.locator("#ann-pooled").click()
    expect(page.locator("#ann-uncertainty-summary")).to_contain_text("ras_head", timeout=30_000)
    page.locator("#ann-export-csv").click()
    expect(page.locator("#ann-csv a")).to_have_count(1, timeout=30_000)
    rows = list(csv.DictReader(io.StringIO(fetch(page.locator("#ann-csv a").first.get_attribute("href")).decode())))
    flagged = [r for r in rows if r["hallucination"] == "1"]
    assert len(flagged) == 1 and int(flagged[0]["region_voxels"]) > 0
    inside, outside = float(flagged[0]["uncertainty_in_region"]), float(flagged[0]["uncertainty_outside_region"])
    assert inside >= 0 and outside >= 0 and inside + outside > 0
    (other,) = [r for r in rows if r["hallucination"] == "0"]
    assert other["uncertainty_in_region"] == ""  # nothing painted: no figure
    (row,) = AnnotationStore(server.annotations / "annotations.sqlite").uncertainty_summary()
    assert row["flags"] == 1 and row["uncertainty_inside"] == pytest.approx(inside, rel=1e-3)

    # the LAS file of the same anatomy: the same radiological pictures
    page.get_by_role("tab", name="Super-resolve").click()
    run_file(page, files / "las_head.nii.gz")
    page.get_by_role("tab", name="Annotate").click()
    expect(page.locator("#ann-status")).to_contain_text("coronal slice", timeout=60_000)
    expect(toggle).to_be_disabled()
    las_pictures = [image_rgb(page, sel) for sel in ("#ann-image-a", "#ann-image-b")]
    # the cubic interpolation of both files is the same anatomy: one picture of each run is the same, pixel for
    # pixel, and it is radiological (the marker, the patient's right, on the screen's left)
    same = [r for r in ras_pictures for q in las_pictures if r.shape == q.shape and np.array_equal(r, q)]
    assert len(same) == 1
    cols = np.nonzero((same[0] > 250).all(axis=2).any(axis=0))[0]
    assert cols.size and cols.max() < same[0].shape[1] / 2
