"""Right results in the app: the network for the upload's own factor, checked before inference;
an unsupported factor refused fast; a finished SR kept when drawing a slice fails."""

from __future__ import annotations

import time

import nibabel as nib
import numpy as np
import pytest

from transmrsr import TransMRSR
from transmrsr.inference import simulate_file
from transmrsr.studio import CaseOptions, plan_volume, run_case

from apphelpers import REPO, free_port, running_app


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """``python app.py`` on the bundled weights (no TRANSMRSR_MODEL)."""
    with running_app(tmp_path_factory.mktemp("work")) as app:
        yield app


def thick(t1_crop, folder, factor: int):
    out = folder / f"t1_thick{factor}.nii.gz"
    simulate_file(t1_crop, out, factor, 2)
    return out


def test_plan_takes_a_thick_upload_factor_from_its_header(t1_crop, tmp_path):
    lr8 = thick(t1_crop, tmp_path, 8)
    assert (plan_volume(lr8, 4).factor, plan_volume(lr8, 4).simulated) == (8, False)  # never the scale choice
    assert (plan_volume(t1_crop, 8).factor, plan_volume(t1_crop, 8).simulated) == (8, True)


def test_thick_upload_runs_the_network_of_its_header_factor(shipped, t1_crop, tmp_path, one_torch_thread):
    """An ×8 thick-slice file with the scale left at 4: the ×8 network runs (its exact output)."""
    from gradio_client import Client, handle_file

    lr8 = thick(t1_crop, tmp_path, 8)
    client = Client(shipped.url, verbose=False)
    sr_path, info = client.predict(handle_file(str(lr8)), 4, 0.9, api_name="/super_resolve")
    assert info["scale"] == 8 and not info["simulated_from_hr"], info
    assert info["model"] == "transmrsr-small-t1-x8" and len(info["model_version"]) == 12
    model8 = TransMRSR.from_pretrained(REPO / "checkpoints" / "transmrsr-small-t1-x8")
    expected = run_case(lr8, model8, tmp_path / "local", CaseOptions(scale=4, phi=0.9))
    got = np.asarray(nib.load(sr_path).dataobj, dtype=np.float32)
    np.testing.assert_allclose(got, expected.sr, rtol=1e-4, atol=1e-3 * float(np.abs(expected.sr).max()))


def test_unsupported_factor_is_refused_in_under_a_second(shipped, t1_crop, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    from test_app_any_factor import thick_file

    # any factor from 1.5 to 10 is served (issue 17, tests/test_app_any_factor.py); ×12 is still not
    lr12 = thick_file(t1_crop, tmp_path, 12.0)
    client = Client(shipped.url, verbose=False)
    with pytest.raises(AppError):  # the client's first request warms its connection (not timed)
        client.predict(handle_file(str(lr12)), 4, 0.9, api_name="/super_resolve")
    start = time.monotonic()
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(lr12)), 4, 0.9, api_name="/super_resolve")
    elapsed = time.monotonic() - start
    message = str(err.value)
    assert "×12" in message and "not served" in message and "1.5 to 10" in message, message
    assert elapsed < 1.0, f"refused after {elapsed:.2f} s"
    assert "/" not in message, message  # no server path


@pytest.fixture
def inprocess_app(tiny_dir, tmp_path, monkeypatch):
    """The app built in this process (so that a viewer failure can be injected), on a free port."""
    import app as appmod
    from transmrsr.serving import ModelPolicy, ModelRegistry, SessionRegistry

    monkeypatch.setattr(appmod.state, "MODELS", ModelRegistry(ModelPolicy(REPO / "checkpoints", default=str(tiny_dir))))
    monkeypatch.setattr(appmod.state, "SESSIONS", SessionRegistry(tmp_path / "sessions"))

    def broken_viewer(*args, **kwargs):
        raise RuntimeError("the slice renderer failed")

    monkeypatch.setattr(appmod.superresolve, "viewer_payload", broken_viewer)
    demo = appmod.build_app()
    port = free_port()
    demo.queue().launch(
        server_port=port, prevent_thread_lock=True, quiet=True, allowed_paths=[str(appmod.SESSIONS.root)]
    )
    yield appmod, f"http://127.0.0.1:{port}/"
    demo.close()


def test_finished_sr_is_kept_when_the_viewer_fails(inprocess_app, browser, t1_crop, one_torch_thread):
    from playwright.sync_api import expect

    appmod, url = inprocess_app
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(url)
    page.locator("#volume-upload input[type=file]").set_input_files(str(t1_crop))
    page.locator("#run").click()
    expect(page.locator("#slice-note")).to_contain_text("could not be drawn", timeout=120_000)
    expect(page.locator("#slice-note")).to_contain_text("the slice renderer failed")
    expect(page.locator("#download")).to_contain_text("t1_crop_sr_x4", timeout=30_000)
    expect(page.locator("#metrics")).to_contain_text("TransMRSR")
    sessions = list(appmod.SESSIONS.root.iterdir())
    assert len(sessions) == 1 and (sessions[0] / "t1_crop_sr_x4.nii.gz").is_file()
    page.close()


def test_x3_thick_upload_is_served_by_the_bundled_weights(shipped, t1_crop, tmp_path, one_torch_thread):
    """A ×3 file (not served directly by the bundled ×4 / ×8): the library's any-factor path, its grid."""
    from gradio_client import Client, handle_file

    from transmrsr.inference import DEFAULT_FUSION, super_resolve_acquisition_file

    lr3 = thick(t1_crop, tmp_path, 3)
    client = Client(shipped.url, verbose=False)
    sr_path, info = client.predict(handle_file(str(lr3)), 8, 0.9, api_name="/super_resolve")
    assert info["factor"] == 3 and info["model"] == "transmrsr-small-t1-x4", info
    models = {f: TransMRSR.from_pretrained(REPO / "checkpoints" / f"transmrsr-small-t1-x{f}") for f in (4, 8)}
    expected = super_resolve_acquisition_file(
        lr3,
        tmp_path / "local.nii.gz",
        models.__getitem__,
        served=(4, 8),
        phi=0.9,
        fusion=DEFAULT_FUSION,
        show_progress=False,
    )
    got, want = nib.load(sr_path), nib.load(tmp_path / "local.nii.gz")
    assert got.shape == want.shape
    np.testing.assert_allclose(got.affine, want.affine, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(got.dataobj, dtype=np.float32), expected.sr, rtol=1e-4, atol=1e-3 * float(np.abs(expected.sr).max())
    )
