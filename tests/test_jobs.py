"""The Train tab's job manager (transmrsr.jobs), on real tiny training subprocesses.

Data: three small "subjects" cut from the ICBM152 T1 that nilearn ships (as in test_training).
The manager launches ``python -m transmrsr ...`` in its own process group; the tests stop a
stage-1 run mid-way (SIGTERM -> it saves its state), resume it to the end, and check that a run
on unreadable data ends "failed (exit 2)" with the reason in the log tail while the manager
stays usable.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from transmrsr import StyleSwinGenerator, TransMRSR, TransMRSRConfig
from transmrsr.jobs import (
    CentroidSpec,
    JobError,
    JobManager,
    Stage1Spec,
    Stage2Spec,
    curve_table,
    loss_curves,
    loss_figure,
    parse_records,
    read_records,
    tail_text,
)

JOB_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def write_subjects(folder: Path) -> Path:
    """Three different 24x28x16 blocks of the ICBM152 T1 at 4 mm."""
    src = importlib.resources.files("nilearn.datasets") / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    img = nib.load(str(src))
    vol = np.asarray(img.dataobj, dtype=np.float32)[::4, ::4, ::4]
    affine = img.affine.copy()
    affine[:3, :3] *= 4
    folder.mkdir(parents=True, exist_ok=True)
    for i, (x, y, z) in enumerate([(8, 10, 10), (14, 16, 14), (18, 24, 20)]):
        block = np.ascontiguousarray(vol[x : x + 24, y : y + 28, z : z + 16])
        nib.save(nib.Nifti1Image(block, affine), str(folder / f"sub{i}.nii.gz"))
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_subjects(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def manager():
    m = JobManager(env=JOB_ENV, stop_timeout=60)
    yield m
    m.shutdown(timeout=10)  # never leave a training process behind


def stage1(data, out, steps, **kw) -> Stage1Spec:
    return Stage1Spec(
        data=str(data),
        out=str(out),
        preset="tiny",
        batch_size=4,
        max_steps=steps,
        log_every=1,
        checkpoint_every=100000,
        sample_every=0,
        **kw,
    )


def wait_until(cond, timeout: float, what: str, manager: JobManager | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = manager.tail(20) if manager else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.1)


# ---------------------------------------------------------------------------- specs (no subprocess)
def test_specs_validate_with_clear_errors(data_dir, tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("no volumes")
    with pytest.raises(JobError, match="give a data folder"):
        stage1("", tmp_path / "o", 5).validate()
    with pytest.raises(JobError, match="no such data folder"):
        stage1(tmp_path / "missing", tmp_path / "o", 5).validate()
    with pytest.raises(JobError, match=r"holds no \.nii"):
        stage1(empty, tmp_path / "o", 5).validate()
    with pytest.raises(JobError, match="output folder"):
        stage1(data_dir, "", 5).validate()
    with pytest.raises(JobError, match="batch size"):
        dataclasses.replace(stage1(data_dir, tmp_path / "o", 5), batch_size=0).validate()
    with pytest.raises(JobError, match="power of two"):
        stage1(data_dir, tmp_path / "o", 5, img_size=48).validate()
    with pytest.raises(JobError, match="preset"):
        dataclasses.replace(stage1(data_dir, tmp_path / "o", 5), preset="huge").validate()
    with pytest.raises(JobError, match="max steps"):
        stage1(data_dir, tmp_path / "o", None).validate()
    stage1(data_dir, tmp_path / "o", 5).validate()  # fine

    # an existing run: start refused (resume it), resume without a state refused
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(JobError, match="no training_state.pt to resume"):
        stage1(data_dir, run, 5).validate(resume=True)
    (run / "training_state.pt").write_bytes(b"x")
    with pytest.raises(JobError, match="a run already lives here"):
        stage1(data_dir, run, 5).validate()
    stage1(data_dir, run, 5).validate(resume=True)

    # stage 2 and the centroid fit need a stage-1 folder with a generator's weights
    s2 = Stage2Spec(data=str(data_dir), out=str(tmp_path / "sr"), preset="tiny")
    with pytest.raises(JobError, match="stage-1 output folder"):
        s2.validate()
    with pytest.raises(JobError, match="no such stage-1 folder"):
        dataclasses.replace(s2, gan=str(tmp_path / "nope")).validate()
    with pytest.raises(JobError, match="no stage-1 weights"):
        dataclasses.replace(s2, gan=str(empty)).validate()
    cfg = TransMRSRConfig.from_preset("tiny")
    sr_model = TransMRSR(cfg).save_pretrained(tmp_path / "sr-model")
    with pytest.raises(JobError, match="not a stage-1 generator"):
        dataclasses.replace(s2, gan=str(sr_model)).validate()
    gen = StyleSwinGenerator(cfg).save_pretrained(tmp_path / "gen")
    dataclasses.replace(s2, gan=str(gen)).validate()
    dataclasses.replace(s2, ablation="no-gp").validate()  # no prior needed without the prior
    with pytest.raises(JobError, match="ablation"):
        dataclasses.replace(s2, gan=str(gen), ablation="no-such").validate()
    with pytest.raises(JobError, match="no stage-1 weights"):
        CentroidSpec(gan=str(empty)).validate()
    with pytest.raises(JobError, match="no saved state"):
        CentroidSpec(gan=str(gen)).validate(resume=True)
    CentroidSpec(gan=str(gen), num_samples=100).validate()


def test_commands(data_dir, tmp_path):
    m = JobManager()
    cmd = m.command_for(stage1(data_dir, tmp_path / "o", 7, img_size=32), resume=True)
    assert cmd[1:4] == ["-m", "transmrsr", "train-gan"] and cmd[-1] == "--resume"
    args = cmd[3:]
    assert args[args.index("--data") + 1] == str(data_dir.resolve())
    assert args[args.index("--out") + 1] == str((tmp_path / "o").resolve())
    for opt, val in {
        "--preset": "tiny",
        "--batch-size": "4",
        "--max-steps": "7",
        "--img-size": "32",
        "--sample-every": "0",
        "--log-every": "1",
    }.items():
        assert args[args.index(opt) + 1] == val, opt
    gen = tmp_path / "gen"
    s2 = Stage2Spec(
        data=str(data_dir),
        out=str(tmp_path / "sr"),
        gan=str(gen),
        preset="tiny",
        scale=8,
        perceptual=False,
        max_steps=None,
        epochs=3,
    )
    args = s2.args()
    assert args[0] == "train-sr" and "--no-perceptual" in args and "--max-steps" not in args
    assert args[args.index("--gan") + 1] == str(gen.resolve()) and args[args.index("--scale") + 1] == "8"
    assert args[args.index("--epochs") + 1] == "3"
    assert "--no-perceptual" not in dataclasses.replace(s2, perceptual=True).args()
    c = CentroidSpec(gan=str(gen), num_samples=600).args()
    assert c == ["fit-centroids", "--gan", str(gen.resolve()), "--num-samples", "600", "--seed", "0"]


def test_records_curves_and_tail_helpers(tmp_path):
    recs = [
        {"event": "start", "stage": "sr", "step": 0},
        {"stage": "sr", "step": 1, "loss": 1.0, "l1": 0.5, "content": None, "style": None, "it_s": 2.0},
        {"stage": "sr", "step": 2, "loss": 0.8, "l1": 0.4, "content": None, "style": None, "it_s": 2.0},
        {"stage": "sr", "event": "epoch", "step": 2, "epoch": 1, "val_psnr": 21.5},
        {"stage": "sr", "event": "epoch", "step": 4, "epoch": 2, "val_psnr": None},
    ]
    text = "".join(json.dumps(r) + "\n" for r in recs) + '{"stage": "sr", "step": 3, "lo'  # half-written
    path = tmp_path / "log.jsonl"
    path.write_text(text)
    assert read_records(path) == recs
    parsed, used = parse_records(text.encode())
    assert parsed == recs and used == text.rindex("\n") + 1
    assert read_records(tmp_path / "missing.jsonl") == []
    junk = b'not json\n[1, 2]\n{"a": 1}\n'
    assert parse_records(junk) == ([{"a": 1}], len(junk))
    curves = loss_curves(recs)
    assert curves == {"loss": [(1, 1.0), (2, 0.8)], "l1": [(1, 0.5), (2, 0.4)], "val_psnr": [(2, 21.5)]}
    assert sorted(curve_table(recs)) == sorted(
        [[1, 1.0, "loss"], [2, 0.8, "loss"], [1, 0.5, "l1"], [2, 0.4, "l1"], [2, 21.5, "val_psnr"]]
    )
    fig = loss_figure(recs)
    assert len(fig.axes) == 2 and len(fig.axes[0].get_lines()) == 2
    assert loss_figure(recs[:1]) is None
    bar = b"start\nstage 1:   0%|  | 1/9\rstage 1:  11%|  | 2/9\rstage 1:  22%|  | 3/9\r"
    assert tail_text(bar, 5) == "start\nstage 1:  22%|  | 3/9"
    assert tail_text(b"a\nb\nc\n\n", 2) == "b\nc"


def test_refuses_a_folder_where_an_earlier_job_still_runs(data_dir, tmp_path):
    """A job left running by an earlier app process (recorded in job.json) blocks a new start there."""
    out = tmp_path / "run"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "transmrsr"])
    manager = JobManager(env=JOB_ENV)
    try:
        (out / "job.json").write_text(json.dumps({"pid": sleeper.pid}))
        cmdline = Path(f"/proc/{sleeper.pid}/cmdline")
        wait_until(lambda: not cmdline.exists() or b"transmrsr" in cmdline.read_bytes(), 30, "the exec")
        with pytest.raises(JobError, match=f"pid {sleeper.pid}.* still running"):
            manager.start(stage1(data_dir, out, 5))
    finally:
        manager.shutdown(timeout=10)
        sleeper.kill()
        sleeper.wait()
    assert not (out / "job.log").exists()


# ---------------------------------------------------------------------------- real jobs
def test_failed_job_reports_and_manager_stays_usable(manager, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.nii.gz").write_bytes(b"this is not a NIfTI volume")
    st = manager.start(stage1(bad, tmp_path / "out", 5))
    assert st.state == "running" and st.pid
    st = wait_until(lambda: (s := manager.status()).state != "running" and s, 120, "the bad job to end", manager)
    assert (st.state, st.label, st.exit_code) == ("failed", "failed (exit 2)", 2)
    assert "broken.nii.gz" in st.message and "not a readable NIfTI" in st.message
    tail = manager.tail(10)
    assert "not a readable NIfTI" in tail and "$ transmrsr train-gan" in tail
    assert manager.records() == []
    with pytest.raises(JobError, match="no job is running"):
        manager.stop()
    # still usable: a new job starts (and is refused while it runs); validation errors do not launch anything
    with pytest.raises(JobError, match="no such data folder"):
        manager.start(stage1(tmp_path / "missing", tmp_path / "out2", 5))
    assert manager.status().label == "failed (exit 2)"


def test_stop_and_resume_to_completion(manager, data_dir, tmp_path):
    out = tmp_path / "run"
    spec = stage1(data_dir, out, 100000)
    manager.start(spec)
    with pytest.raises(JobError, match="already running"):
        manager.start(stage1(data_dir, tmp_path / "other", 5))
    assert not (tmp_path / "other").exists()

    def steps():
        return [r for r in manager.records() if "event" not in r]

    wait_until(lambda: len(steps()) >= 2, 180, "logged steps", manager)
    st = manager.status()
    assert st.state == "running" and st.step >= 2 and st.total == 100000 and st.it_s > 0 and st.eta_s > 0
    assert "it/s" in st.progress_text() and "ETA" in st.progress_text()
    curves = loss_curves(manager.records())
    assert {"loss_g", "loss_d"} <= set(curves) and len(curves["loss_g"]) >= 2
    assert loss_figure(manager.records()) is not None

    st = manager.stop(wait=True)
    assert st.state == "stopped" and st.exit_code == 0, manager.tail(20)
    assert "Resume" in st.label
    state = torch.load(out / "training_state.pt", map_location="cpu", weights_only=True)
    s = state["step"]
    assert s >= 2 and st.step == s
    last = read_records(out / "log.jsonl")[-1]
    assert (last["event"], last["step"]) == ("stopped", s)
    assert "stopped at step" in manager.tail(5)
    pid = json.loads((out / "job.json").read_text())["pid"]
    assert pid == st.pid

    # a fresh start in the stopped run's folder is refused; resume continues it to the end
    with pytest.raises(JobError, match="a run already lives here"):
        manager.start(dataclasses.replace(spec, max_steps=s + 2))
    st = manager.resume(dataclasses.replace(spec, max_steps=s + 2))
    assert st.running and st.command[-1] == "--resume"
    st = wait_until(lambda: (x := manager.status()).state != "running" and x, 180, "the resumed run", manager)
    assert st.state == "finished" and st.exit_code == 0, manager.tail(20)
    assert (st.step, st.total) == (s + 2, s + 2) and st.progress_text().startswith(f"step {s + 2} / {s + 2} (100%)")
    assert torch.load(out / "training_state.pt", map_location="cpu", weights_only=True)["step"] == s + 2
    records = manager.records()
    assert [r["step"] for r in records if "event" not in r] == list(range(1, s + 3))
    assert [r["event"] for r in records if "event" in r] == ["start", "stopped", "resume", "done"]
    assert "resumed stage 1" in manager.tail(10)
    assert (out / "model.safetensors").is_file()
