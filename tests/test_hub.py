"""Weights in the Hugging Face way: save/load round trip, local Hub cache offline, bad folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from transmrsr import PretrainedLoadError, StyleSwinGenerator, TransMRSR, TransMRSRConfig
from transmrsr.cli import main as cli_main

REPO_ROOT = Path(__file__).resolve().parents[1]


def _output(model: TransMRSR, seed: int = 3, phi: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 1, model.config.img_size, model.config.img_size, generator=g)
    with torch.inference_mode():
        return model(x, phi=phi)


def test_save_then_load_is_bit_identical(tiny_model, tmp_path):
    out_dir = tiny_model.save_pretrained(tmp_path / "w", model_card="# card\n")
    assert sorted(p.name for p in out_dir.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = TransMRSR.from_pretrained(out_dir)
    assert loaded.config == tiny_model.config
    assert loaded.truncation.is_fitted
    assert torch.equal(loaded.truncation.centroids, tiny_model.truncation.centroids)
    assert torch.equal(_output(loaded), _output(tiny_model))
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    config = json.loads((out_dir / "config.json").read_text())
    assert config["model_type"] == "transmrsr" and config["architecture"] == "TransMRSR"


def test_overrides_at_load_time(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    loaded = TransMRSR.from_pretrained(tmp_path, phi=0.3)
    assert loaded.config.phi == 0.3
    with pytest.raises(PretrainedLoadError, match="config.json"):
        TransMRSR.from_pretrained(tmp_path, no_such_field=1)


def _write_hub_cache(model: TransMRSR, cache: Path, repo_id: str, commit: str) -> None:
    """Lay out a Hugging Face hub cache (refs + snapshots) as huggingface_hub itself does."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    model.save_pretrained(snapshot)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)


def test_from_pretrained_through_offline_hub_cache(tiny_model, tmp_path):
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    _write_hub_cache(tiny_model, cache, "someone/transmrsr-tiny", commit)
    expected = _output(tiny_model)
    torch.save(expected, tmp_path / "expected.pt")
    script = f"""
import sys, torch
from transmrsr import TransMRSR, PretrainedLoadError
torch.set_num_threads({torch.get_num_threads()})  # the same kernels as the parent, for bit-identity
x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
for rev in (None, "{commit}"):
    m = TransMRSR.from_pretrained("someone/transmrsr-tiny", revision=rev)
    with torch.inference_mode():
        y = m(x, phi=0.5)
    assert torch.equal(y, torch.load(r"{tmp_path / "expected.pt"}")), rev
try:
    TransMRSR.from_pretrained("someone/not-cached")
except PretrainedLoadError as exc:
    print("ERR", exc)
print("OK")
"""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path / "home"))
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout
    err_line = next(line for line in proc.stdout.splitlines() if line.startswith("ERR"))
    assert "someone/not-cached/config.json" in err_line and "cache" in err_line


def test_push_to_hub_uploads_config_and_weights(tiny_model, monkeypatch):
    import huggingface_hub

    seen = {}

    def fake_create_repo(self, repo_id, **kwargs):
        seen["created"] = repo_id

    def fake_upload_folder(self, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        seen["files"] = sorted(p.name for p in folder.iterdir())
        seen["reloaded"] = TransMRSR.from_pretrained(folder)
        return "https://hub.example/commit/abc"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", fake_upload_folder)
    url = tiny_model.push_to_hub("someone/transmrsr-tiny", model_card="# TransMRSR tiny\n")
    assert url.endswith("abc")
    assert seen["created"] == "someone/transmrsr-tiny"
    assert seen["files"] == ["README.md", "config.json", "model.safetensors"]
    assert torch.equal(_output(seen["reloaded"]), _output(tiny_model))


# --------------------------------------------------------------------------- bad folders
@pytest.fixture
def saved(tiny_model, tmp_path) -> Path:
    return tiny_model.save_pretrained(tmp_path / "model")


def test_missing_config_is_named(saved):
    (saved / "config.json").unlink()
    with pytest.raises(PretrainedLoadError, match=r"config\.json: missing"):
        TransMRSR.from_pretrained(saved)


def test_missing_weights_and_pickles_are_refused(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(PretrainedLoadError, match=r"model\.safetensors: missing$"):
        TransMRSR.from_pretrained(saved)
    (saved / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(PretrainedLoadError, match=r"pytorch_model\.bin: pickled checkpoints are not loaded"):
        TransMRSR.from_pretrained(saved)


def test_truncated_weights_are_refused(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(PretrainedLoadError, match=r"model\.safetensors: not a readable safetensors file"):
        TransMRSR.from_pretrained(saved)


def test_garbage_weights_are_refused(saved):
    (saved / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(PretrainedLoadError, match=r"model\.safetensors"):
        TransMRSR.from_pretrained(saved)


def test_invalid_json_config_is_named(saved):
    (saved / "config.json").write_text("{not json")
    with pytest.raises(PretrainedLoadError, match=r"config\.json: not valid JSON"):
        TransMRSR.from_pretrained(saved)


def test_incompatible_config_version_is_named(saved):
    cfg = json.loads((saved / "config.json").read_text())
    cfg["config_format_version"] = 999
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PretrainedLoadError, match=r"config\.json: config_format_version 999 is not supported"):
        TransMRSR.from_pretrained(saved)


def test_config_not_matching_weights_is_named(saved):
    cfg = json.loads((saved / "config.json").read_text())
    cfg["shallow_dim"], cfg["enc_dims"][0], cfg["dec_channels"][-1] = 16, 16, 16
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        PretrainedLoadError, match=r"model\.safetensors: does not match its config\.json: .*shape mismatch"
    ):
        TransMRSR.from_pretrained(saved)


def test_non_finite_weights_are_refused(tiny_model, tmp_path):
    with torch.no_grad():
        tiny_model.recon_out.weight[0, 0, 0, 0] = float("nan")
    tiny_model.save_pretrained(tmp_path)
    with pytest.raises(PretrainedLoadError, match="NaN/Inf"):
        TransMRSR.from_pretrained(tmp_path)


def test_generator_folder_is_not_loaded_as_sr_model(tmp_path):
    gen = StyleSwinGenerator(TransMRSRConfig.from_preset("tiny"))
    gen.save_pretrained(tmp_path)
    with pytest.raises(PretrainedLoadError, match="holds a StyleSwinGenerator, not a TransMRSR"):
        TransMRSR.from_pretrained(tmp_path)
    reloaded = StyleSwinGenerator.from_pretrained(tmp_path)
    z = torch.randn(2, gen.config.style_dim)
    with torch.inference_mode():
        assert torch.equal(reloaded(z), gen.eval()(z))


def test_not_a_folder_and_missing_folder(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(PretrainedLoadError, match="not a folder"):
        TransMRSR.from_pretrained(f)
    with pytest.raises(PretrainedLoadError, match="no such folder"):
        TransMRSR.from_pretrained(tmp_path / "nope")


def test_failed_save_keeps_the_previous_weights(tiny_model, saved, monkeypatch):
    before = (saved / "model.safetensors").read_bytes()
    import transmrsr.hub as hub

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(hub.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        tiny_model.save_pretrained(saved)
    assert (saved / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]


def test_cli_info_on_folder_and_bad_folder(saved, tmp_path, capsys):
    assert cli_main(["info", "--model", str(saved), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "TransMRSR" and info["preset"] == "tiny" and info["centroids_fitted"] is True
    (saved / "config.json").unlink()
    assert cli_main(["info", "--model", str(saved)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "config.json: missing" in err


def test_cli_info_on_an_edsr_folder(tmp_path, capsys):
    from transmrsr.models import EDSR, EDSRConfig

    folder = tmp_path / "edsr"
    model = EDSR(EDSRConfig.from_preset("tiny"))
    model.save_pretrained(folder)
    assert cli_main(["info", "--model", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "EDSR" and info["parameters"] == model.num_parameters()
    assert (info["channels"], info["num_blocks"]) == (model.config.channels, model.config.num_blocks)
