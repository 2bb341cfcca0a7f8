"""``transmrsr sr-dataset``: BIDS trees of blocks of the ICBM152 2009a T1 (real MRI, shipped with nilearn;
``benchmarks/bids_tree.py``), super-resolved with a tiny model into BIDS derivatives; resumed; with a
bad volume among them; and sharded over two real CPU processes under torchrun."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from benchmarks.bids_tree import HEAD_STARTS, make_bids, thick_block
from benchmarks.launch import cpu_env, sr_dataset, torchrun
from transmrsr import __version__
from transmrsr.cli import main
from transmrsr.data.bids import BIDSError, derivative_path, find_inputs, split_name

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_summary(out: Path) -> list[dict]:
    with open(out / "transmrsr_summary.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_bids_names_and_inputs(tmp_path):
    assert split_name("sub-01_ses-1_run-2_T1w.nii.gz") == (["sub-01", "ses-1", "run-2"], "T1w", ".nii.gz")
    assert derivative_path("sub-01/ses-1/anat/sub-01_ses-1_run-2_T1w.nii.gz").as_posix() == (
        "sub-01/ses-1/anat/sub-01_ses-1_run-2_desc-transmrsr_T1w.nii.gz"
    )
    assert derivative_path("sub-01/anat/sub-01_desc-preproc_T2w.nii").as_posix() == (
        "sub-01/anat/sub-01_desc-transmrsr_T2w.nii.gz"
    )
    with pytest.raises(BIDSError):
        derivative_path("anat/scan_T1w.nii.gz")
    root = tmp_path / "raw"
    make_bids(root, HEAD_STARTS[:2], extras=True, bad=True)
    got = [p.as_posix() for p in find_inputs(root, "T1w")]
    assert got == [
        "sub-01/anat/sub-01_T1w.nii.gz",
        "sub-02/ses-1/anat/sub-02_ses-1_run-2_T1w.nii.gz",
        "sub-99/anat/sub-99_T1w.nii.gz",
    ]
    assert [p.as_posix() for p in find_inputs(root, "T2w")] == ["sub-01/anat/sub-01_T2w.nii.gz"]
    with pytest.raises(BIDSError, match="not a BIDS dataset"):
        find_inputs(tmp_path, "T1w")


def test_sr_dataset_derivatives_sidecars_summary_and_resume(tmp_path, tiny_dir, capsys):
    root, out = tmp_path / "raw", tmp_path / "raw" / "derivatives" / "transmrsr"
    inputs = make_bids(root, HEAD_STARTS[:2], extras=True, bad=True)
    t0 = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    rc = main(["sr-dataset", str(root), str(out), "--model", str(tiny_dir), "--no-fusion", "--phi", "0.5"])
    said = capsys.readouterr()
    assert rc == 2  # one bad volume
    err = said.err.strip().splitlines()
    assert len(err) == 1 and "sub-99/anat/sub-99_T1w.nii.gz" in err[0] and "isotropic" in err[0], err
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "transmrsr"

    weights = sha256(tiny_dir / "model.safetensors")
    for src in inputs[:2]:
        rel = src.relative_to(root)
        sr = out / derivative_path(rel)
        side = sr.with_name(sr.name.replace(".nii.gz", ".json"))
        assert "desc-transmrsr" in sr.name and sr.is_file() and side.is_file()
        doc = json.loads(side.read_text())
        assert doc["ModelName"] == tiny_dir.name and doc["ModelVersion"] == "sha256:" + weights[:16]
        assert doc["Phi"] == 0.5 and doc["Factor"] == pytest.approx(4.0)
        assert doc["InputSHA256"] == sha256(src)
        assert doc["SoftwareName"] == "transmrsr" and doc["SoftwareVersion"] == __version__
        assert dt.datetime.fromisoformat(doc["DateTime"].replace("Z", "+00:00")) >= t0
        assert doc["Sources"] == [f"bids:raw:{rel.as_posix()}"]
        img = nib.load(str(sr))
        assert img.shape == (32, 40, 32)
        assert np.allclose(img.header.get_zooms(), 1.0, atol=1e-4)
    gap = json.loads((out / "sub-01/anat/sub-01_desc-transmrsr_T1w.json").read_text())
    assert gap["InputSliceThickness"] == 3.0  # the input's sidecar: 3 mm slices every 4 mm
    rows = {r["input"]: r for r in read_summary(out)}
    assert set(rows) == {p.relative_to(root).as_posix() for p in inputs}
    assert [rows[k]["status"] for k in sorted(rows)] == ["done", "done", "failed"]
    assert "isotropic" in rows["sub-99/anat/sub-99_T1w.nii.gz"]["message"]

    # resumed: nothing redone; a missing sidecar (a run killed after the NIfTI) and a changed input are redone
    first = out / "sub-01/anat/sub-01_desc-transmrsr_T1w.nii.gz"
    second = out / derivative_path(inputs[1].relative_to(root))
    stamp = first.stat().st_mtime_ns
    second.with_name(second.name.replace(".nii.gz", ".json")).unlink()
    assert (
        main(["sr-dataset", str(root), str(out), "--model", str(tiny_dir), "--no-fusion", "--phi", "0.5", "--quiet"])
        == 2
    )
    capsys.readouterr()
    rows = {r["input"]: r["status"] for r in read_summary(out)}
    assert rows == {
        "sub-01/anat/sub-01_T1w.nii.gz": "skipped",
        "sub-02/ses-1/anat/sub-02_ses-1_run-2_T1w.nii.gz": "done",
        "sub-99/anat/sub-99_T1w.nii.gz": "failed",
    }
    assert first.stat().st_mtime_ns == stamp
    nib.save(thick_block((62, 82, 60)), inputs[0])  # new data under the same name
    inputs[2].unlink()  # the bad volume is taken out
    assert (
        main(["sr-dataset", str(root), str(out), "--model", str(tiny_dir), "--no-fusion", "--phi", "0.5", "--quiet"])
        == 0
    )
    rows = {r["input"]: r["status"] for r in read_summary(out)}
    assert rows == {
        "sub-01/anat/sub-01_T1w.nii.gz": "done",
        "sub-02/ses-1/anat/sub-02_ses-1_run-2_T1w.nii.gz": "skipped",
    }
    assert json.loads(first.with_name(first.name.replace(".nii.gz", ".json")).read_text())["InputSHA256"] == sha256(
        inputs[0]
    )
    # another phi: every output is redone
    assert (
        main(["sr-dataset", str(root), str(out), "--model", str(tiny_dir), "--no-fusion", "--phi", "0.6", "--quiet"])
        == 0
    )
    assert {r["status"] for r in read_summary(out)} == {"done"}


def test_sr_dataset_refuses_a_folder_that_is_not_bids(tmp_path, capsys):
    rc = main(["sr-dataset", str(tmp_path), str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not a BIDS dataset" in err[0]


def test_sr_dataset_two_cpu_processes_share_the_volumes(tmp_path, tiny_dir):
    root, out = tmp_path / "raw", tmp_path / "deriv"
    inputs = make_bids(root, HEAD_STARTS[:4], extras=True, bad=True)
    cmd = [*torchrun(2), *sr_dataset(root, out, tiny_dir, "--no-fusion")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cpu_env("TRANSMRSR_DEBUG"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]  # a bad volume is a summary row, not a failed launch
    ours = [line for line in proc.stderr.splitlines() if line.startswith("transmrsr sr-dataset:")]
    assert len(ours) == 1 and "sub-99" in ours[0] and "isotropic" in ours[0], proc.stderr[-3000:]
    rows = read_summary(out)
    assert sorted(r["input"] for r in rows) == sorted(p.relative_to(root).as_posix() for p in inputs)  # each once
    assert {r["rank"] for r in rows} == {"0", "1"}
    by_rank = {r["input"]: int(r["rank"]) for r in rows}
    ordered = sorted(by_rank)
    assert all(by_rank[name] == i % 2 for i, name in enumerate(ordered))  # inputs r, r + 2, ... on rank r
    assert [r["status"] for r in sorted(rows, key=lambda r: r["input"])] == ["done"] * 4 + ["failed"]
    for src in inputs[:4]:
        doc = json.loads(
            (out / derivative_path(src.relative_to(root))).with_suffix("").with_suffix(".json").read_text()
        )
        assert doc["Rank"] == by_rank[src.relative_to(root).as_posix()] and doc["Device"] == "cpu"
