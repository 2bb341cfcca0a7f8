"""Library errors in neutral words, the command line's in its flags (``transmrsr.errors``, ``transmrsr.cli``).

The library names a parameter the caller gave in its own words ("the thick axis"), and says which parameter it is
(``exc.params``); the CLI shows the flag the user typed in its place ("--axis"). ``tests/test_lint.py`` checks that no
library string names a flag.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from transmrsr.cli import build_parser, error_text, flag_names, main
from transmrsr.data.bids import BIDSError, find_inputs
from transmrsr.data.io import Volume, VolumeError, check_scale
from transmrsr.data.public import prepare_public
from transmrsr.errors import NamesParameters, ParameterError
from transmrsr.inference import resolve_geometry, simulate_file
from transmrsr.losses import PerceptualWeightsError, load_vgg19_features
from transmrsr.training.common import STATE_NAME, RunExistsError, start_run


def test_neutral_words_and_a_front_ends_names():
    exc = VolumeError(
        "/d/{x}/a.nii: {axis} must be 0, 1 or 2, got 5", path="/d/{x}/a.nii", params={"axis": "the thick axis"}
    )
    assert str(exc) == "/d/{x}/a.nii: the thick axis must be 0, 1 or 2, got 5"  # other braces (a path) stay
    assert exc.params == {"axis": "the thick axis"} and exc.path == "/d/{x}/a.nii"
    assert exc.worded({"axis": "--axis"}.get) == "/d/{x}/a.nii: --axis must be 0, 1 or 2, got 5"
    assert exc.worded(lambda p: None) == str(exc)  # no name for it: the neutral words
    assert exc.public_message() == "a.nii: the thick axis must be 0, 1 or 2, got 5"
    again = pickle.loads(pickle.dumps(exc))  # across processes (sr-dataset workers, the app's jobs)
    assert str(again) == str(exc) and again.params == exc.params and again.worded(str.upper) == exc.worded(str.upper)
    plain = ParameterError("nothing to name")
    assert isinstance(plain, ValueError) and str(plain) == "nothing to name" and plain.params == {}
    # the mixin also sits on OSError and RuntimeError subclasses
    assert isinstance(RunExistsError("x {out}", params={"out": "o"}), FileExistsError)
    assert isinstance(PerceptualWeightsError("x"), RuntimeError)


def test_cli_shows_the_flag_of_the_command():
    parser = build_parser()
    sr, tsr = flag_names(parser, "sr"), flag_names(parser, "train-sr")
    assert sr["axis"] == "--axis" and sr["fusion"] == "--fusion" and sr["series"] == "--series"
    assert tsr["thick_axis"] == "--axis" and tsr["perceptual"] == "--no-perceptual" and tsr["img_size"] == "--img-size"
    exc = ParameterError(
        "{ablation} no-sdt does not apply to {arch} edsr;\n  {not_a_flag}",
        params={"ablation": "the ablation", "arch": "the architecture", "not_a_flag": "words"},
    )
    assert error_text(exc, tsr) == "--ablation no-sdt does not apply to --arch edsr; --not-a-flag"  # one line
    assert error_text(ValueError("a\n b"), tsr) == "a b"


def _volume(tmp_path: Path, zooms=(1.0, 1.0, 4.0)) -> Volume:
    return Volume(np.ones((8, 8, 6), np.float32), np.diag([*zooms, 1.0]), path=str(tmp_path / "in.nii.gz"))


def test_geometry_errors_library_words_and_cli_flags(tmp_path, capsys):
    vol = _volume(tmp_path)
    with pytest.raises(VolumeError) as err:
        resolve_geometry(vol, axis=5)
    assert "in.nii.gz: the thick axis must be 0, 1 or 2, got 5" in str(err.value) and err.value.params.keys() == {
        "axis"
    }
    with pytest.raises(VolumeError) as err:
        resolve_geometry(vol, axis=0)
    assert "axis 0 is not the thick axis of this volume; give the slice-thickness factor too" in str(err.value)
    assert err.value.params.keys() == {"scale"}
    with pytest.raises(VolumeError) as err:
        check_scale(40.0, "in.nii.gz")
    assert str(err.value).startswith("in.nii.gz: the slice-thickness factor must lie between") and "--" not in str(
        err.value
    )
    with pytest.raises(VolumeError, match="the factor of its header must lie") as err:
        check_scale(40.0, "in.nii.gz", what="the factor of its header")  # not a parameter: nothing to replace
    assert err.value.params == {}
    hr = tmp_path / "hr.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4)), str(hr))
    with pytest.raises(VolumeError, match="the thick axis must be 0, 1 or 2, got 3"):
        simulate_file(hr, tmp_path / "lr.nii.gz", 4, 3)
    # the command line says the same with its flag
    capsys.readouterr()
    assert main(["simulate", str(hr), str(tmp_path / "lr.nii.gz"), "--scale", "4", "--axis", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"transmrsr simulate: error: {hr}: --axis must be 0, 1 or 2, got 3"]


def test_bids_suffix(tmp_path, capsys):
    root = tmp_path / "raw"
    root.mkdir()
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.8.0"}')
    with pytest.raises(BIDSError) as err:
        find_inputs(root, "T1 w")
    assert str(err.value).startswith("the suffix 'T1 w' is not a BIDS suffix") and err.value.params.keys() == {"suffix"}
    capsys.readouterr()
    assert main(["sr-dataset", str(root), str(tmp_path / "out"), "--suffix", "T1 w"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error: --suffix 'T1 w' is not a BIDS suffix" in err[0], err


def test_public_volumes_not_found(tmp_path, capsys):
    src = tmp_path / "downloads"
    src.mkdir()
    with pytest.raises(VolumeError) as err:
        prepare_public(src, tmp_path / "out", log=lambda text: None)
    assert "(named <id>.nii.gz or .mgz; transmrsr.data.public.PUBLIC_SOURCES lists them)" in str(err.value)
    capsys.readouterr()
    assert main(["prepare-public", str(src), "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "(named <id>.nii.gz or .mgz; --list lists them)" in err[-1], err


def test_a_run_that_lives_in_the_folder(tmp_path):
    (tmp_path / STATE_NAME).write_bytes(b"")
    with pytest.raises(RunExistsError) as err:
        start_run(SimpleNamespace(out=str(tmp_path), resume=False, seed=0), accelerator=object())
    assert "a run already lives here; resume it (resume=True) or choose another output folder" in str(err.value)
    flags = flag_names(build_parser(), "train-gan")
    assert "resume it (--resume) or choose another --out" in error_text(err.value, flags)


def test_vgg_weights_that_cannot_be_had(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(PerceptualWeightsError) as err:
        load_vgg19_features("nobody/no-vgg19-here", local_files_only=True)
    assert isinstance(err.value, NamesParameters) and err.value.params.keys() == {"vgg_weights", "perceptual"}
    assert "give a local copy (vgg_weights=FILE), or train without the perceptual terms (perceptual=False)" in str(
        err.value
    )
    flags = flag_names(build_parser(), "train-sr")
    assert "(--vgg-weights), or train without the perceptual terms (--no-perceptual)" in error_text(err.value, flags)
