import importlib.resources
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from transmrsr import TransMRSR, TransMRSRConfig

T1 = importlib.resources.files("nilearn.datasets") / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny_model() -> TransMRSR:
    """A tiny TransMRSR with fitted centroids, in eval mode."""
    torch.manual_seed(1)
    cfg = TransMRSRConfig.from_preset("tiny")
    model = TransMRSR(cfg).eval()
    model.truncation.set_centroids(torch.randn(cfg.num_centroids, cfg.style_dim))
    return model


@pytest.fixture(scope="module")
def one_torch_thread():
    """On a busy 2-core machine torch's default two intra-op threads are far slower than one;
    modules that run many small forwards use this and get the old setting back afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def t1_crop(tmp_path_factory) -> Path:
    """A 48x56x44 block of the ICBM152 T1 (real MRI), with the affine moved to the crop."""
    img = nib.load(str(T1))
    start = np.array([74, 90, 70])
    data = np.asarray(img.dataobj, dtype=np.float32)[74:122, 90:146, 70:114]
    affine = img.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ start
    path = tmp_path_factory.mktemp("t1") / "t1_crop.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny model folder with centroids and a visible residual (the SR differs from cubic; φ matters)."""
    torch.manual_seed(0)
    model = TransMRSR(TransMRSRConfig.from_preset("tiny"))
    model.truncation.set_centroids(torch.randn(4, 32) * 3)
    with torch.no_grad():  # a visible residual, so that φ visibly matters in the tests
        model.recon_out.weight.mul_(50)
    return model.save_pretrained(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright, one per test module."""
    from playwright.sync_api import sync_playwright

    from apphelpers import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def no_data_read(monkeypatch):
    """Any read of NIfTI image data fails the test: for checks that must act on the header alone."""
    import nibabel.arrayproxy
    import nibabel.volumeutils

    def refuse(*args, **kwargs):
        raise AssertionError("the image data was read")

    monkeypatch.setattr(nibabel.volumeutils, "array_from_file", refuse)
    monkeypatch.setattr(nibabel.arrayproxy, "array_from_file", refuse)


# Markers (docs/development.md): `pytest -m "not e2e and not slow"` is the fast part a developer runs while editing.
#: Test modules that start a real Gradio server (gradio_client, Playwright in Chromium).
E2E_PREFIX = "test_app"
#: Test modules whose tests run training loops, whole-volume inference, subprocess pipelines or benchmarks
#: (each well over a few seconds on 2 cores; together most of the suite's time).
SLOW_MODULES = frozenset(
    {
        "test_training.py",
        "test_ablations.py",
        "test_adapt.py",
        "test_any_factor.py",
        "test_real_acquisitions.py",
        "test_benchmarks_default_weights.py",
        "test_benchmarks_quality.py",
        "test_benchmarks_speed.py",
        "test_dataset_processes.py",
        "test_jobs.py",
        "test_lint.py",
    }
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = item.path.name
        if name.startswith(E2E_PREFIX):
            item.add_marker(pytest.mark.e2e)
        if name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
