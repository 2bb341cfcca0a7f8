"""The ``transmrsr`` command line, driven for real.

Bad inputs go through ``python -m transmrsr`` in subprocesses (run a few at a time, in one
module fixture, because starting Python + torch costs seconds), and ``transmrsr.cli.main`` in
process where that is enough. Each bad input must give exit code 2, exactly one line on stderr
that names the file and the problem, no traceback, and no output (or temporary) file; an output
file that already exists must be left untouched. End to end: a block of the ICBM152 2009a T1
shipped with nilearn goes through simulate -> sr -> evaluate.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import os
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import transmrsr.data.io as tio
from transmrsr import TransMRSR, TransMRSRConfig
from transmrsr.cli import main

from apphelpers import gzip_bomb

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OMP_NUM_THREADS"] = "1"  # 2 busy cores: one torch thread per process is much faster
    env["MKL_NUM_THREADS"] = "1"
    env["HF_HUB_OFFLINE"] = "1"  # never reach the network
    env.pop("TRANSMRSR_DEBUG", None)
    return env


ENV = _env()


def run_cli(*args, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "transmrsr", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )


def one_error_line(stderr: str) -> str:
    """The single line on stderr (fails if there are more, or none)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected exactly one stderr line, got:\n{stderr}"
    return lines[0]


def check_message(line: str, path: Path, keywords: tuple[str, ...]) -> None:
    assert str(path) in line, f"{path} not named in: {line}"
    rest = line.replace(str(path), "").lower()  # the keyword must not come from the file name
    assert any(k in rest for k in keywords), f"none of {keywords} in: {line}"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny model (random weights, fitted centroids) saved with save_pretrained."""
    torch.manual_seed(0)
    cfg = TransMRSRConfig.from_preset("tiny")
    model = TransMRSR(cfg)
    model.truncation.set_centroids(torch.randn(cfg.num_centroids, cfg.style_dim))
    return model.save_pretrained(tmp_path_factory.mktemp("tiny_model"))


# ---------------------------------------------------------------------------- bad inputs
def _smooth(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 100.0 + 10.0).astype(np.float32)


def _save(path: Path, data, affine=None) -> Path:
    affine = np.diag([1.0, 1.0, 4.0, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


def _good_lr(path: Path) -> Path:
    """A valid thick-slice volume: 20 x 18 x 6 voxels of 1 x 1 x 4 mm."""
    return _save(path, _smooth((20, 18, 6)))


def _text(path: Path) -> Path:
    path.write_text("this is a text file, not an image\n")
    return path


def _random_bytes(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    return path


def _truncated(path: Path) -> Path:
    full = path.with_name("full_for_truncation.nii.gz")
    _good_lr(full)
    raw = full.read_bytes()
    full.unlink()
    assert raw[:2] == b"\x1f\x8b"
    path.write_bytes(raw[: len(raw) // 2])
    return path


def _missing(path: Path) -> Path:
    return path


def _two_d(path: Path) -> Path:
    return _save(path, _smooth((20, 18)), np.eye(4))


def _four_d(path: Path) -> Path:
    return _save(path, _smooth((20, 18, 6, 3)))


def _with_value(value):
    def make(path: Path) -> Path:
        d = _smooth((20, 18, 6))
        d[5, 6, 2] = value
        return _save(path, d)

    return make


def _constant(path: Path) -> Path:
    return _save(path, np.full((20, 18, 6), 7.0, dtype=np.float32))


def _bad_pixdim(value):
    """qform-only file (sform_code 0) whose pixdim[1] (voxel size along axis 0) is ``value``."""

    def make(path: Path) -> Path:
        assert path.name.endswith(".nii")
        img = nib.Nifti1Image(_smooth((20, 18, 6)), np.diag([1.0, 1.0, 4.0, 1.0]))
        img.header.set_sform(None, code=0)
        img.header.set_qform(np.diag([1.0, 1.0, 4.0, 1.0]), code=1)
        nib.save(img, str(path))
        raw = bytearray(path.read_bytes())
        assert struct.unpack("<f", raw[80:84])[0] == 1.0
        raw[80:84] = struct.pack("<f", value)
        path.write_bytes(bytes(raw))
        return path

    return make


def _zero_affine_column(path: Path) -> Path:
    """sform with a zero third column: voxel size 0 along axis 2."""
    assert path.name.endswith(".nii")
    _good_lr(path)
    raw = bytearray(path.read_bytes())
    assert struct.unpack("<4f", raw[312:328]) == (0.0, 0.0, 4.0, 0.0)  # srow_z
    raw[320:324] = struct.pack("<f", 0.0)
    path.write_bytes(bytes(raw))
    return path


def _header_only(shape):
    """A .nii holding only a header that announces ``shape``: its data must never be read."""

    def make(path: Path) -> Path:
        hdr = nib.Nifti1Header()
        hdr.set_data_shape(shape)
        hdr.set_data_dtype(np.float32)
        hdr.set_zooms((1.0, 1.0, 4.0))
        hdr.set_sform(np.diag([1.0, 1.0, 4.0, 1.0]), code=1)
        with open(path, "wb") as fh:
            hdr.write_to(fh)
            fh.write(b"\x00" * 4)
        assert nib.load(str(path)).shape == shape
        return path

    return make


#: case -> (file name, builder, words about the problem, one of which the message must hold)
BAD_INPUTS = {
    "text_named_nii_gz": ("x.nii.gz", _text, ("gzip", "not a readable", "corrupt", "not a nifti")),
    "random_bytes_nii": ("random.nii", _random_bytes, ("not a readable", "not a nifti", "corrupt")),
    "truncated_nii_gz": ("cut.nii.gz", _truncated, ("truncated", "corrupt", "ended", "not a readable")),
    "missing_file": ("absent.nii.gz", _missing, ("no such file", "not found", "does not exist")),
    "two_d_image": ("flat.nii.gz", _two_d, ("2-d", "3-d")),
    "four_d_3_volumes": ("series.nii.gz", _four_d, ("4-d", "3 volumes")),
    "nan_values": ("vals_nan.nii.gz", _with_value(np.nan), ("nan",)),
    "inf_values": ("vals_inf.nii.gz", _with_value(np.inf), ("inf",)),
    "constant_image": ("flat_value.nii.gz", _constant, ("constant",)),
    "zero_pixdim": ("pix0.nii", _bad_pixdim(0.0), ("voxel size",)),
    "negative_pixdim": ("pixneg.nii", _bad_pixdim(-1.0), ("voxel size",)),
    "zero_voxel_size_affine": ("col0.nii", _zero_affine_column, ("voxel size",)),
    "too_many_voxels": ("big_total.nii", _header_only((1024, 1024, 1024)), ("beyond", "size", "limit")),
    "axis_too_long": ("big_axis.nii", _header_only((4096, 8, 8)), ("beyond", "size", "limit")),
}


def _bad_model_config(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    (folder / "model.safetensors").write_bytes(b"garbage")
    return folder


def _bad_model_weights(tiny: Path):
    def make(folder: Path) -> Path:
        folder.mkdir()
        (folder / "config.json").write_bytes((tiny / "config.json").read_bytes())
        (folder / "model.safetensors").write_bytes((tiny / "model.safetensors").read_bytes()[:1000])
        return folder

    return make


def _empty_folder(folder: Path) -> Path:
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def sr_runs(tmp_path_factory, tiny_dir):
    """Build every bad case and run ``transmrsr sr`` on each (3 subprocesses at a time).

    Returns ``case -> (completed process, output folder, path the message must name, keywords,
    sentinel bytes or None)``.
    """
    root = tmp_path_factory.mktemp("sr_bad")
    inputs = root / "inputs"
    inputs.mkdir()
    cases = {}
    for case, (name, make, words) in BAD_INPUTS.items():
        path = make(inputs / name)
        cases[case] = dict(input=path, model=tiny_dir, named=path, words=words, sentinel=None)
    good = _good_lr(inputs / "good_lr.nii.gz")
    iso = _save(inputs / "iso_hr.nii.gz", _smooth((20, 18, 16)), np.eye(4))
    cases["isotropic_input"] = dict(input=iso, model=tiny_dir, named=iso, words=("simulate",), sentinel=None)
    models = {
        "model_missing_folder": (root / "no_such_model", lambda p: p, ("no such", "missing", "not found")),
        "model_corrupt_config": (root / "bad_config", _bad_model_config, ("json", "corrupt", "invalid")),
        "model_corrupt_weights": (root / "bad_weights", _bad_model_weights(tiny_dir), ("safetensors", "corrupt")),
        "model_empty_folder": (root / "empty_model", _empty_folder, ("missing", "config.json")),
    }
    for case, (folder, make, words) in models.items():
        cases[case] = dict(input=good, model=make(folder), named=folder, words=words, sentinel=None)
    sentinel = b"previous result, must survive\n" * 10
    cases["sentinel_nan_input"] = dict(cases["nan_values"], sentinel=sentinel)
    cases["sentinel_bad_model"] = dict(cases["model_corrupt_weights"], sentinel=sentinel)

    def run(item):
        case, c = item
        out_dir = root / f"out_{case}"
        out_dir.mkdir()
        if c["sentinel"] is not None:
            (out_dir / "out.nii.gz").write_bytes(c["sentinel"])
        proc = run_cli("sr", c["input"], out_dir / "out.nii.gz", "--model", c["model"], "--quiet")
        return case, (proc, out_dir, c["named"], c["words"], c["sentinel"])

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(run, cases.items()))


SR_CASES = list(BAD_INPUTS) + [
    "isotropic_input",
    "model_missing_folder",
    "model_corrupt_config",
    "model_corrupt_weights",
    "model_empty_folder",
]


@pytest.mark.parametrize("case", SR_CASES)
def test_sr_bad_input(sr_runs, case):
    proc, out_dir, named, words, _ = sr_runs[case]
    assert proc.returncode == 2, f"exit code {proc.returncode}; stderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr + proc.stdout
    line = one_error_line(proc.stderr)
    assert line.startswith("transmrsr sr: error:"), line
    check_message(line, named, words)
    assert list(out_dir.iterdir()) == []  # no output, no temporary file


def test_sr_isotropic_message_points_to_simulate(sr_runs):
    proc, *_ = sr_runs["isotropic_input"]
    line = one_error_line(proc.stderr)
    assert "transmrsr simulate" in line or "'simulate'" in line
    assert "--scale" in line and "--axis" in line


@pytest.mark.parametrize("case", ["sentinel_nan_input", "sentinel_bad_model"])
def test_sr_failure_leaves_existing_output_untouched(sr_runs, case):
    proc, out_dir, named, words, sentinel = sr_runs[case]
    assert proc.returncode == 2
    check_message(one_error_line(proc.stderr), named, words)
    assert [p.name for p in out_dir.iterdir()] == ["out.nii.gz"]
    assert (out_dir / "out.nii.gz").read_bytes() == sentinel


SIMULATE_ONLY = [c for c in BAD_INPUTS]


@pytest.mark.parametrize("case", SIMULATE_ONLY)
def test_simulate_bad_input_in_process(tmp_path, capfd, case):
    name, make, words = BAD_INPUTS[case]
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    path = make(tmp_path / "in" / name)
    sentinel = b"keep me"
    (tmp_path / "out" / "kept.nii.gz").write_bytes(sentinel)
    capfd.readouterr()
    rc = main(["simulate", str(path), str(tmp_path / "out" / "lr.nii.gz"), "--scale", "4", "--axis", "2"])
    err = capfd.readouterr().err
    assert rc == 2, f"exit code {rc}; stderr:\n{err}"
    assert "Traceback" not in err
    line = one_error_line(err)
    assert line.startswith("transmrsr simulate: error:")
    check_message(line, path, words)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["kept.nii.gz"]
    # failing onto an existing output file keeps it
    rc = main(["simulate", str(path), str(tmp_path / "out" / "kept.nii.gz"), "--scale", "4", "--axis", "2"])
    capfd.readouterr()
    assert rc == 2
    assert (tmp_path / "out" / "kept.nii.gz").read_bytes() == sentinel


def test_simulate_bad_input_subprocess(tmp_path):
    """The same through ``python -m transmrsr`` (one case: a 4-D series)."""
    path = _four_d(tmp_path / "series.nii.gz")
    proc = run_cli("simulate", path, tmp_path / "out" / "lr.nii.gz", "--scale", "4", "--axis", "2")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    check_message(one_error_line(proc.stderr), path, ("4-d", "volumes"))
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_simulate_total_voxel_limit_monkeypatched(tmp_path, capfd, monkeypatch):
    path = _save(tmp_path / "hr.nii.gz", _smooth((20, 18, 16)), np.eye(4))
    assert main(["simulate", str(path), str(tmp_path / "lr.nii.gz"), "--scale", "4", "--axis", "2", "--quiet"]) == 0
    (tmp_path / "lr.nii.gz").unlink()
    capfd.readouterr()
    monkeypatch.setattr(tio, "MAX_TOTAL_VOXELS", 20 * 18 * 16 - 1)
    rc = main(["simulate", str(path), str(tmp_path / "lr.nii.gz"), "--scale", "4", "--axis", "2"])
    line = one_error_line(capfd.readouterr().err)
    assert rc == 2
    check_message(line, path, ("beyond", "size", "limit"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr.nii.gz"]


@pytest.mark.parametrize(
    "args,words",
    [
        (["--scale", "1", "--axis", "2"], ("--scale must lie between",)),
        (["--scale", "4", "--axis", "3"], ("--axis must be 0, 1 or 2",)),
        (["--scale", "4", "--axis", "2", "--profile", "bogus"], ("profile",)),
        (["--scale", "8", "--axis", "1"], ("slices", "fewer")),  # 6 slices along axis 1
    ],
    ids=["scale_1", "axis_3", "bad_profile", "fewer_slices_than_factor"],
)
def test_simulate_bad_arguments(tmp_path, capfd, args, words):
    path = _save(tmp_path / "hr.nii.gz", _smooth((20, 6, 16)), np.eye(4))
    rc = main(["simulate", str(path), str(tmp_path / "lr.nii.gz"), *args])
    line = one_error_line(capfd.readouterr().err)
    assert rc == 2
    check_message(line, path, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr.nii.gz"]


# ---------------------------------------------------------------------------- end to end, real T1
MNI = importlib.resources.files("nilearn.datasets") / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
CROP = (slice(66, 130), slice(80, 152), slice(64, 124))  # 64 x 72 x 60 voxels around the centre


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, tiny_dir):
    if not MNI.is_file():
        pytest.skip("nilearn's ICBM152 T1 is not installed")
    root = tmp_path_factory.mktemp("e2e")
    img = nib.load(str(MNI))
    assert img.shape == (197, 233, 189)
    data = np.asarray(img.dataobj)[CROP]
    offset = np.array([s.start for s in CROP] + [1.0])
    affine = img.affine.copy()
    affine[:, 3] = img.affine @ offset  # voxel (0,0,0) of the crop is voxel offset of the original
    crop = root / "crop.nii.gz"
    nib.save(nib.Nifti1Image(data, affine, header=img.header), str(crop))
    runs = {}
    runs["simulate"] = run_cli("simulate", crop, root / "lr.nii.gz", "--scale", "4", "--axis", "2", "--quiet")
    runs["sr"] = run_cli("sr", root / "lr.nii.gz", root / "sr.nii.gz", "--model", tiny_dir, "--quiet")
    runs["evaluate"] = run_cli("evaluate", root / "sr.nii.gz", crop, "--lr", root / "lr.nii.gz", "--json")
    return root, crop, affine, runs


def test_e2e_crop_geometry_is_the_original(e2e):
    root, crop, affine, _ = e2e
    mni, c = nib.load(str(MNI)), nib.load(str(crop))
    # a voxel of the crop sits where the same voxel of the original sits
    np.testing.assert_allclose(c.affine @ [10, 20, 30, 1], mni.affine @ [76, 100, 94, 1])
    assert c.shape == (64, 72, 60)
    assert np.asarray(c.dataobj).std() > 10  # real, non-empty anatomy


def test_e2e_simulate_and_sr(e2e):
    root, crop, affine, runs = e2e
    for step in ("simulate", "sr"):
        assert runs[step].returncode == 0, runs[step].stderr
        assert runs[step].stderr.strip() == ""
    lr = nib.load(str(root / "lr.nii.gz"))
    assert lr.shape == (64, 72, 15)
    np.testing.assert_allclose(lr.header.get_zooms()[:3], (1.0, 1.0, 4.0), rtol=1e-6)
    c, sr = nib.load(str(crop)), nib.load(str(root / "sr.nii.gz"))
    assert sr.shape == c.shape
    assert np.allclose(sr.affine, c.affine, atol=1e-5)
    np.testing.assert_allclose(sr.header.get_zooms()[:3], c.header.get_zooms()[:3], rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(sr.dataobj)))
    assert sorted(p.name for p in root.iterdir()) == ["crop.nii.gz", "lr.nii.gz", "sr.nii.gz"]


def test_e2e_evaluate_json(e2e):
    _, _, _, runs = e2e
    proc = runs["evaluate"]
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["axis"], out["scale"]) == (2, 4)
    rows = {r["method"]: r for r in out["rows"]}
    assert list(rows) == ["TransMRSR", "cubic", "trilinear"]
    for r in rows.values():
        assert math.isfinite(r["psnr"]) and math.isfinite(r["psnr_mask"]) and math.isfinite(r["psnr_2d"])
        assert -1 <= r["ssim"] <= 1
    assert rows["cubic"]["psnr"] > rows["trilinear"]["psnr"] - 1
    assert rows["cubic"]["psnr"] > 20  # x4 interpolation of a smooth template is not noise
    assert rows["cubic"]["ssim"] > 0.5


def test_e2e_evaluate_scale_axis_in_process(e2e, capsys):
    root, crop, _, _ = e2e
    rc = main(["evaluate", str(root / "sr.nii.gz"), str(crop), "--scale", "4", "--axis", "2", "--json"])
    assert rc == 0
    rows = {r["method"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert set(rows) == {"TransMRSR", "cubic", "trilinear"}
    assert all(math.isfinite(r["psnr"]) for r in rows.values())


def test_e2e_evaluate_needs_lr_or_scale(e2e):
    root, crop, _, _ = e2e
    proc = run_cli("evaluate", root / "sr.nii.gz", crop, "--json")
    assert proc.returncode == 2
    assert proc.stdout.strip() == ""
    assert "Traceback" not in proc.stderr
    line = one_error_line(proc.stderr)
    check_message(line, crop, ("--lr",))


def test_e2e_sr_fusion_phi(e2e, tiny_dir):
    """``sr`` fuses both planes by default; ``--no-fusion`` runs one, ``--phi`` changes the result."""
    from transmrsr import TransMRSR
    from transmrsr.data.io import load_volume
    from transmrsr.inference import super_resolve

    root, crop, _, _ = e2e
    outs = {
        "single": (root / "single" / "sr_single.nii.gz", ("--no-fusion",)),
        "phi": (root / "fusion" / "sr_fusion.nii.gz", ("--fusion", "--phi", "0.5")),
    }
    for out, flags in outs.values():
        proc = run_cli("sr", root / "lr.nii.gz", out, "--model", tiny_dir, *flags, "--quiet")
        assert proc.returncode == 0, proc.stderr
        assert [p.name for p in out.parent.iterdir()] == [out.name]
    c = nib.load(str(crop))
    default = np.asarray(nib.load(str(root / "sr.nii.gz")).dataobj)
    got = {}
    for key, (out, _) in outs.items():
        sr = nib.load(str(out))
        assert sr.shape == c.shape and np.allclose(sr.affine, c.affine, atol=1e-5)
        got[key] = np.asarray(sr.dataobj)
        assert np.all(np.isfinite(got[key])) and np.abs(got[key] - default).max() > 1e-3
    lr = load_volume(root / "lr.nii.gz").data
    model = TransMRSR.from_pretrained(tiny_dir)
    for fusion, vol in ((True, default), (False, got["single"])):
        ref = super_resolve(model, lr, 2, 4, n_thin=c.shape[2], fusion=fusion, show_progress=False).sr
        np.testing.assert_allclose(vol, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())))


# ---------------------------------------------------------------------------- refused before the run (issue 15)
# Each case: exit code 2, one stderr line naming the user's own argument and the problem, no other
# absolute path (no installation or server folder), nothing written, and for input problems no image
# data read (``no_data_read``) nor model loaded (``no_model``).
import re  # noqa: E402


def _no_other_paths(line: str, *user_args) -> None:
    """Every absolute path in ``line`` is one of the user's arguments, a folder above one or a
    file inside one (e.g. the config.json of a --model folder)."""
    args = [str(a) for a in user_args]
    assert str(REPO) not in line and sys.prefix not in line, line
    for token in re.findall(r"(?<![\w.])/[^\s,;:()'\"]+", line):
        assert any(a == token or a.startswith(token.rstrip("/") + "/") or token.startswith(a + "/") for a in args), (
            f"{token} is not the user's argument, in: {line}"
        )


def cli_error(capfd, *argv) -> str:
    """Run ``main(argv)`` in process; return its single stderr line (exit code 2, no traceback)."""
    capfd.readouterr()
    rc = main([str(a) for a in argv])
    out = capfd.readouterr()
    assert rc == 2, f"exit code {rc}; stderr:\n{out.err}"
    assert "Traceback" not in out.err + out.out
    line = one_error_line(out.err)
    assert line.startswith(f"transmrsr {argv[0]}: error:"), line
    _no_other_paths(line, *argv[1:])
    return line


@pytest.fixture
def no_model(monkeypatch):
    import transmrsr.cli as cli

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(cli, "_load_model", refuse)


def _raw_nii(path: Path, shape=(20, 18, 6), dtype=np.float32, zooms=(1.0, 1.0, 4.0)) -> Path:
    """A .nii written byte by byte (header, 4 bytes of extension flag, data of 1s)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr.set_zooms(zooms)
    hdr.set_sform(np.diag([*zooms, 1.0]), code=1)
    hdr.set_data_offset(352)
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    path.write_bytes(hdr.binaryblock + b"\x00" * 4 + b"\x01" * n)
    return path


@pytest.mark.parametrize(
    "make,words",
    [
        (lambda p: _raw_nii(p, dtype=np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])), ("colour", "rgb")),
        (lambda p: _raw_nii(p, dtype=np.complex64), ("complex",)),
        (lambda p: _raw_nii(p, zooms=(1.0, 1.0, 1e6)), ("voxel size", "outside")),
        (lambda p: _raw_nii(p, zooms=(0.05, 0.05, 4.0)), ("factor", "between 1.5 and")),  # x80 from the voxel sizes
        (_bad_pixdim(float("nan")), ("voxel size",)),
        (gzip_bomb, ("limit",)),
    ],
    ids=["rgb", "complex", "voxel_1x1x1e6mm", "factor_80_from_voxels", "nan_pixdim", "gzip_bomb"],
)
@pytest.mark.parametrize("command", ["sr", "simulate"])
def test_bad_input_refused_before_reading(tmp_path, capfd, no_data_read, no_model, make, words, command):
    name = "in.nii.gz" if make is gzip_bomb else "in.nii"
    (tmp_path / "in").mkdir()
    path = make(tmp_path / "in" / name)
    out = tmp_path / "out.nii.gz"
    extra = ["--quiet"] if command == "sr" else ["--scale", "4", "--axis", "2"]
    line = cli_error(capfd, command, path, out, *extra)
    check_message(line, path, words)
    assert not out.exists()


@pytest.mark.parametrize("scale", ["100000", "17", "1", "-4", "nan", "inf", "1e308"])
def test_sr_absurd_scale_refused_before_reading(tmp_path, capfd, no_data_read, no_model, scale):
    path = _good_lr(tmp_path / "lr.nii.gz")
    line = cli_error(capfd, "sr", path, tmp_path / "sr.nii.gz", "--scale", scale, "--axis", "2")
    check_message(line, path, ("--scale",))
    assert "between 1.5 and 16" in line


@pytest.mark.parametrize("axis", ["3", "-1"])
def test_sr_bad_axis_is_one_line_before_reading(tmp_path, capfd, no_data_read, no_model, axis):
    # refused before the volume is read: no input-range warning computed along an axis that does not exist
    path = _good_lr(tmp_path / "lr.nii.gz")
    line = cli_error(capfd, "sr", path, tmp_path / "sr.nii.gz", "--axis", axis)
    check_message(line, path, ("--axis must be 0, 1 or 2",))


def test_sr_output_beyond_the_memory_limit_refused_before_reading(tmp_path, capfd, monkeypatch, no_data_read, no_model):
    """20 x 18 x 6 voxels at x8: 69,120 bytes of float32 output, over a 60,000-byte limit."""
    monkeypatch.setenv("TRANSMRSR_MAX_OUTPUT_BYTES", "60000")
    path = _good_lr(tmp_path / "lr.nii.gz")
    line = cli_error(capfd, "sr", path, tmp_path / "sr.nii.gz", "--scale", "8", "--axis", "2")
    check_message(line, path, ("limit",))
    assert "TRANSMRSR_MAX_OUTPUT_BYTES" in line


@pytest.mark.parametrize("how", ["same_path", "relative_spelling", "hard_link", "symlink"])
def test_output_equal_to_input_is_refused(tmp_path, capfd, monkeypatch, no_model, how):
    path = _good_lr(tmp_path / "lr.nii.gz")
    before = path.read_bytes()
    out = {
        "same_path": path,
        "relative_spelling": tmp_path / "." / "sub" / ".." / "lr.nii.gz",
        "hard_link": tmp_path / "link.nii.gz",
        "symlink": tmp_path / "sym.nii.gz",
    }[how]
    (tmp_path / "sub").mkdir()
    if how == "hard_link":
        os.link(path, out)
    if how == "symlink":
        out.symlink_to(path)
    for command, extra in (("sr", ["--quiet"]), ("simulate", ["--scale", "2", "--axis", "2"])):
        line = cli_error(capfd, command, path, out, *extra)
        check_message(line, out, ("is the input",))
        assert path.read_bytes() == before


@pytest.mark.parametrize("how", ["parent_is_a_file", "read_only_filesystem", "permission"])
def test_unwritable_output_refused_before_the_run(tmp_path, capfd, no_model, how):
    """Checked before the model is loaded (``no_model``) and before the data are read."""
    path = _good_lr(tmp_path / "lr.nii.gz")
    if how == "parent_is_a_file":
        (tmp_path / "notes.txt").write_text("a file")
        out, words = tmp_path / "notes.txt" / "sr" / "sr.nii.gz", ("not a folder", "is a file")
    elif how == "read_only_filesystem":
        if not Path("/proc/self").exists():
            pytest.skip("no /proc file system (read-only even for root)")
        out, words = Path("/proc/transmrsr_out/sr.nii.gz"), ("cannot write",)
    else:
        if os.geteuid() == 0:
            pytest.skip("root may write into a read-only folder")
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        out, words = ro / "sr.nii.gz", ("cannot write", "permission")
    for command, extra in (("sr", ["--quiet"]), ("simulate", ["--scale", "2", "--axis", "2"])):
        line = cli_error(capfd, command, path, out, *extra)
        check_message(line, out, words)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left in (["lr.nii.gz"], ["lr.nii.gz", "notes.txt"], ["lr.nii.gz", "ro"]), left  # nothing written


def test_output_in_a_missing_but_creatable_folder_is_written(tmp_path, tiny_dir):
    """A missing folder that can be created is not an error (it is created when writing)."""
    path = _good_lr(tmp_path / "lr.nii.gz")
    assert (
        main(
            [
                "sr",
                str(path),
                str(tmp_path / "new" / "deeper" / "sr.nii.gz"),
                "--model",
                str(tiny_dir),
                "--quiet",
                "--no-fusion",
            ]
        )
        == 0
    )
    assert (tmp_path / "new" / "deeper" / "sr.nii.gz").is_file()


@pytest.mark.parametrize("command", ["train-gan", "train-sr", "prepare-packaged", "prepare-public"])
def test_unwritable_out_folder_refused_before_the_run(tmp_path, capfd, command):
    (tmp_path / "notes.txt").write_text("a file")
    out = tmp_path / "notes.txt" / "run"
    extra = {
        "train-gan": ["--data", tmp_path],
        "train-sr": ["--data", tmp_path, "--scale", "4"],
        "prepare-packaged": [],
        "prepare-public": [tmp_path],
    }[command]
    line = cli_error(capfd, command, "--out", out, *extra)
    check_message(line, out, ("not a folder", "is a file"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_sr_device_cuda_without_cuda_is_one_line(tmp_path, capfd, no_data_read, no_model, device):
    path = _good_lr(tmp_path / "lr.nii.gz")
    line = cli_error(capfd, "sr", path, tmp_path / "sr.nii.gz", "--device", device)
    assert f"--device {device}" in line and "no CUDA GPU" in line and "--device cpu" in line


def test_sr_device_unknown_name_is_one_line(tmp_path, capfd, no_data_read, no_model):
    line = cli_error(capfd, "sr", _good_lr(tmp_path / "lr.nii.gz"), tmp_path / "sr.nii.gz", "--device", "gpu0")
    assert "'gpu0'" in line and "not a device name" in line


def _string_bool_model(tiny: Path, folder: Path, field: str = "use_skip", value="false") -> Path:
    folder.mkdir()
    config = json.loads((tiny / "config.json").read_text())
    assert isinstance(config[field], bool)
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes((tiny / "model.safetensors").read_bytes())
    return folder


@pytest.mark.parametrize("value", ["false", "true", 0, None], ids=["str_false", "str_true", "int_0", "null"])
def test_config_boolean_given_as_string_is_refused(tmp_path, capfd, tiny_dir, value):
    model = _string_bool_model(tiny_dir, tmp_path / "model", value=value)
    line = cli_error(capfd, "info", "--model", model)
    check_message(line, model, ("use_skip",))
    assert "must be a boolean" in line and "without quotes" in line
    line = cli_error(capfd, "sr", _good_lr(tmp_path / "lr.nii.gz"), tmp_path / "sr.nii.gz", "--model", model, "--quiet")
    assert "use_skip" in line and not (tmp_path / "sr.nii.gz").exists()


@pytest.mark.parametrize(
    "field,value,words",
    [("img_size", "32", "an integer"), ("phi", "0.5", "a number"), ("enc_dims", [8, "16", 16], "a list of integers")],
)
def test_config_other_types_given_as_strings_are_refused(tmp_path, tiny_dir, field, value, words):
    from transmrsr.config import ConfigError

    config = TransMRSRConfig.from_preset("tiny").to_dict()
    config[field] = value
    with pytest.raises(ConfigError, match=words):
        TransMRSRConfig.from_dict(config, source="config.json")


def test_missing_bundled_weights_message_names_no_installation_folder(tmp_path, capfd, monkeypatch):
    import transmrsr.cli as cli

    monkeypatch.setattr(cli, "CHECKPOINTS", tmp_path / "no_checkpoints_here")
    path = _good_lr(tmp_path / "lr.nii.gz")
    line = cli_error(capfd, "sr", path, tmp_path / "sr.nii.gz", "--quiet")
    assert "no bundled weights for x4" in line and str(tmp_path / "no_checkpoints_here") not in line


@pytest.fixture(scope="module")
def limit_runs(tmp_path_factory, tiny_dir):
    """The same refusals through ``python -m transmrsr`` (one process each, 3 at a time)."""
    root = tmp_path_factory.mktemp("limits")
    good = _good_lr(root / "lr.nii.gz")
    bomb = gzip_bomb(root / "bomb.nii.gz")
    model = _string_bool_model(tiny_dir, root / "model_str_bool")
    cases = {
        "gzip_bomb": ("sr", bomb, root / "o1.nii.gz", "--model", tiny_dir, "--quiet"),
        "output_is_input": ("sr", good, good, "--model", tiny_dir, "--quiet"),
        "scale_100000": ("sr", good, root / "o2.nii.gz", "--scale", "100000", "--axis", "2", "--quiet"),
        "string_bool": ("sr", good, root / "o3.nii.gz", "--model", model, "--quiet"),
        "rgb": (
            "sr",
            _raw_nii(root / "rgb.nii", dtype=np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])),
            root / "o4.nii.gz",
            "--quiet",
        ),
    }
    if not torch.cuda.is_available():
        cases["device_cuda"] = ("sr", good, root / "o5.nii.gz", "--device", "cuda", "--quiet")

    def run(item):
        case, argv = item
        return case, (argv, run_cli(*argv, timeout=120))

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(run, cases.items()))


@pytest.mark.parametrize("case", ["gzip_bomb", "output_is_input", "scale_100000", "string_bool", "rgb", "device_cuda"])
def test_refusals_through_the_command_line(limit_runs, case):
    if case not in limit_runs:
        pytest.skip("this machine has CUDA")
    argv, proc = limit_runs[case]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    line = one_error_line(proc.stderr)
    assert line.startswith("transmrsr sr: error:"), line
    _no_other_paths(line, *argv[1:])
    assert not any(p.name.startswith("o") and p.suffix == ".gz" for p in Path(argv[2]).parent.iterdir())


def test_sr_warns_when_the_file_says_it_is_not_t1(tmp_path, capsys):
    """The bundled weights are T1: a file named as a FLAIR runs, with a visible warning; a T1 does not warn."""
    from transmrsr.cli import main

    data = (_smooth((28, 30, 8), seed=3) * 100 + 50).astype(np.float32)
    for name, warned in (("sub-01_FLAIR.nii.gz", True), ("sub-01_T1w.nii.gz", False)):
        src = _save(tmp_path / name, data, np.diag([1.0, 1.0, 4.0, 1.0]))
        assert main(["sr", str(src), str(tmp_path / f"sr_{name}"), "--no-fusion", "--quiet"]) == 0
        err = capsys.readouterr().err
        assert ("does not look T1-weighted (its name says FLAIR)" in err) is warned, err
        assert ("--adapt fits them to this scan first" in err) is warned, err  # what the user can do about it
        assert (tmp_path / f"sr_{name}").is_file()
