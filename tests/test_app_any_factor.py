"""Any thick-slice factor in the app (issue 17): a non-integer ×3.3 upload is served through the
library's any-factor path onto its isotropic output grid; "Adapt to this scan" runs (seeded, the
loaded weights untouched); what cannot be served is still refused fast, before inference."""

from __future__ import annotations

import hashlib
import time

import nibabel as nib
import numpy as np
import pytest

from transmrsr import TransMRSR
from transmrsr.data.degradation import resample_axis
from transmrsr.inference import DEFAULT_FUSION, super_resolve_acquisition_file
from transmrsr.studio import plan_volume

from apphelpers import running_app

STEPS = 2


def thick_file(t1_crop, folder, factor: float):
    """A real thick-slice-like file: the T1 crop averaged over ``factor`` mm slabs every ``factor`` mm
    along voxel axis 2, with the affine of that acquisition (no simulation tag: the header's factor)."""
    img = nib.load(str(t1_crop))
    hr = np.asarray(img.dataobj, dtype=np.float32)
    n = int(hr.shape[2] // factor)
    centres = factor * (np.arange(n) + 0.5) - 0.5
    offsets = np.linspace(-(factor - 1) / 2, (factor - 1) / 2, 5)
    lr = np.mean([resample_axis(hr, 2, centres + o) for o in offsets], axis=0).astype(np.float32)
    affine = img.affine.copy()
    affine[:3, 2] *= factor
    affine[:3, 3] += img.affine[:3, 2] * (factor - 1) / 2
    out = folder / f"t1_thick{str(factor).replace('.', 'p')}.nii.gz"
    nib.save(nib.Nifti1Image(lr, affine), out)
    return out


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_dir):
    """``python app.py`` on the tiny model (TRANSMRSR_MODEL), adaptation shortened to a few steps."""
    with running_app(tmp_path_factory.mktemp("work"), tiny_dir, TRANSMRSR_ADAPT_STEPS=str(STEPS)) as app:
        yield app


def test_plan_serves_any_factor_with_the_bundled_weights(t1_crop, tmp_path):
    lr3 = thick_file(t1_crop, tmp_path, 3.3)
    plan = plan_volume(lr3, 4, served=lambda r: (4, 8))
    assert plan.acq is not None and abs(plan.acq.factor - 3.3) < 1e-3 and plan.factor == 4 and not plan.simulated
    assert plan.label == "3.3"


def test_non_integer_thick_upload_is_served_on_the_library_grid(server, tiny_dir, t1_crop, tmp_path, one_torch_thread):
    from gradio_client import Client, handle_file

    lr = thick_file(t1_crop, tmp_path, 3.3)
    client = Client(server.url, verbose=False)
    sr_path, info = client.predict(handle_file(str(lr)), 4, 0.9, False, api_name="/super_resolve")
    assert abs(info["factor"] - 3.3) < 1e-3 and not info["simulated_from_hr"] and not info["adapted"], info
    tiny = TransMRSR.from_pretrained(tiny_dir)
    expected = super_resolve_acquisition_file(
        lr, tmp_path / "local.nii.gz", lambda m: tiny, served=(3,), phi=0.9, fusion=DEFAULT_FUSION, show_progress=False
    )
    want = nib.load(tmp_path / "local.nii.gz")
    got = nib.load(sr_path)
    assert got.shape == want.shape == expected.sr.shape
    np.testing.assert_allclose(got.affine, want.affine, atol=1e-5)
    zooms = np.linalg.norm(got.affine[:3, :3], axis=0)
    np.testing.assert_allclose(zooms, zooms[0], rtol=1e-4)  # isotropic
    data = np.asarray(got.dataobj, dtype=np.float32)
    np.testing.assert_allclose(data, expected.sr, rtol=1e-4, atol=1e-3 * float(np.abs(expected.sr).max()))


def test_adapt_runs_seeded_and_never_writes_the_weights(server, tiny_dir, t1_crop, tmp_path, one_torch_thread):
    from gradio_client import Client, handle_file

    weights = tiny_dir / "model.safetensors"
    before = sha(weights)
    lr = thick_file(t1_crop, tmp_path, 3.3)
    client = Client(server.url, verbose=False)
    outs = []
    for _ in range(2):
        sr_path, info = client.predict(handle_file(str(lr)), 4, 0.9, True, api_name="/super_resolve")
        assert info["adapted"] and "adapted" in sr_path, info
        outs.append(np.asarray(nib.load(sr_path).dataobj, dtype=np.float32))
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)  # seeded: reproducible
    assert sha(weights) == before


def test_adapt_checkbox_runs_with_progress_in_the_page(server, browser, t1_crop, tmp_path, one_torch_thread):
    from playwright.sync_api import expect

    lr = thick_file(t1_crop, tmp_path, 3.3)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(server.url)
    page.locator("#volume-upload input[type=file]").set_input_files(str(lr))
    page.locator("#adapt input[type=checkbox]").check()
    page.evaluate("""() => { window.__seen = new Set();
        new MutationObserver(() => { const t = document.body.innerText;
            for (const m of t.matchAll(/adapting to this scan: step \\d+\\/\\d+|: slice \\d+\\/\\d+/g)) window.__seen.add(m[0]); })
        .observe(document.body, {subtree: true, childList: true, characterData: true}); }""")
    page.locator("#run").click()
    expect(page.locator("#download")).to_contain_text("adapted", timeout=60_000)
    expect(page.locator("#case-info")).to_contain_text("×3.3")
    expect(page.locator("#case-info")).to_contain_text("adapted to this scan")
    expect(page.locator("#slice-note")).to_contain_text("φ is fixed for this result")
    seen = page.evaluate("() => [...window.__seen]")
    assert any(s.startswith("adapting to this scan: step") for s in seen), seen  # one bar: adaptation, then slices
    assert any("slice" in s for s in seen), seen
    assert page.locator(".progress-text").count() <= 1
    page.close()


def test_factor_a_custom_model_cannot_serve_is_refused_fast(server, t1_crop, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    lr = thick_file(t1_crop, tmp_path, 9.5)  # the tiny model runs only at its own factor, 2 to 8
    client = Client(server.url, verbose=False)
    with pytest.raises(AppError):  # the client's first request warms its connection (not timed)
        client.predict(handle_file(str(lr)), 4, 0.9, False, api_name="/super_resolve")
    start = time.monotonic()
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(lr)), 4, 0.9, False, api_name="/super_resolve")
    elapsed = time.monotonic() - start
    message = str(err.value)
    assert "×9.5" in message and "not served" in message, message
    assert elapsed < 1.0, f"refused after {elapsed:.2f} s"
