"""Weights in the Hugging Face way: ``config.json`` + ``model.safetensors``.

``save_pretrained(dir)`` writes both files atomically; ``from_pretrained(repo_id_or_dir)``
reads them from a folder or from the Hub (through ``huggingface_hub``, so its cache and
``HF_HUB_OFFLINE=1`` work); ``push_to_hub(repo_id)`` uploads them. Only safetensors are
read: pickled checkpoints are refused.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from .config import ConfigError, TransMRSRConfig
from .fileutil import atomic_write_bytes

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_PICKLE_NAMES = ("pytorch_model.bin", "model.pt", "model.pth", "model.ckpt")

T = TypeVar("T", bound="PretrainedMixin")


class PretrainedLoadError(OSError):
    """A weights folder or Hub repository cannot be loaded; the message names the file."""


def _looks_like_path(name: str) -> bool:
    """Hub repo ids are ``name`` or ``owner/name``; anything else is meant as a folder."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


class PretrainedMixin:
    """Adds ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` to a module built from a
    config (``self.config``): a :class:`TransMRSRConfig` unless the class names another
    ``config_class`` (one with ``to_dict`` / ``from_dict(data, source)``, e.g. the EDSR baseline's)."""

    config: TransMRSRConfig
    config_class: ClassVar[type] = TransMRSRConfig

    # ------------------------------------------------------------------ save
    def save_pretrained(self, save_directory: str | os.PathLike, model_card: str | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (and ``README.md`` if given) to a folder.

        Files are written to temporary names and renamed, so an interrupted save never leaves a
        half-written file in place of a good one.
        """
        from safetensors.torch import save

        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        config = self.config.to_dict()
        config["architecture"] = type(self).__name__
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        metadata = {"format": "pt", "architecture": type(self).__name__}
        atomic_write_bytes(out / WEIGHTS_NAME, save(state, metadata=metadata))
        atomic_write_bytes(out / CONFIG_NAME, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
        if model_card is not None:
            atomic_write_bytes(out / "README.md", model_card.encode())
        return out

    # ------------------------------------------------------------------ load
    @classmethod
    def from_pretrained(
        cls: type[T],
        pretrained: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        map_location: str | torch.device = "cpu",
        **config_overrides: Any,
    ) -> T:
        """Load from a local folder or a Hub repo id (``owner/name``, optional ``revision``).

        ``config_overrides`` change switches that do not alter the weights' shapes (e.g.
        ``phi``). Raises :class:`PretrainedLoadError` naming the file that is missing, corrupt or
        incompatible.
        """
        config_path, weights_path = _resolve_files(
            str(pretrained), revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
        )
        config = _read_config(
            config_path, expected_architecture=cls.__name__, overrides=config_overrides, config_class=cls.config_class
        )
        model = cls(config)
        state = _read_weights(weights_path, map_location)
        _load_state(model, state, weights_path)
        model.eval()
        return model

    # ------------------------------------------------------------------ push
    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str = "Upload TransMRSR weights",
        private: bool | None = None,
        token: str | None = None,
        revision: str | None = None,
        model_card: str | None = None,
    ) -> str:
        """Create (if needed) the Hub model repo and upload config, weights and card. Returns the commit URL."""
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, model_card=model_card)
            info = api.upload_folder(
                repo_id=repo_id, folder_path=tmp, commit_message=commit_message, revision=revision, repo_type="model"
            )
        return str(info)


def _resolve_files(
    pretrained: str, *, revision: str | None, cache_dir, local_files_only: bool, token
) -> tuple[Path, Path]:
    local = Path(pretrained).expanduser()
    if local.is_dir():
        config_path, weights_path = local / CONFIG_NAME, local / WEIGHTS_NAME
        if not config_path.is_file():
            raise PretrainedLoadError(
                f"{config_path}: missing; a TransMRSR weights folder holds {CONFIG_NAME} and {WEIGHTS_NAME}"
            )
        if not weights_path.is_file():
            pickles = [n for n in _PICKLE_NAMES if (local / n).exists()]
            hint = (
                f" (found {pickles[0]}: pickled checkpoints are not loaded, convert it to safetensors)"
                if pickles
                else ""
            )
            raise PretrainedLoadError(f"{weights_path}: missing{hint}")
        return config_path, weights_path
    if local.exists():
        raise PretrainedLoadError(f"{local}: not a folder; pass the folder that holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    if _looks_like_path(pretrained):
        raise PretrainedLoadError(f"{pretrained}: no such folder (and not a Hub repo id of the form owner/name)")

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    paths = []
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        try:
            paths.append(
                Path(
                    hf_hub_download(
                        pretrained,
                        name,
                        revision=revision,
                        cache_dir=cache_dir,
                        local_files_only=local_files_only,
                        token=token,
                    )
                )
            )
        except LocalEntryNotFoundError as exc:
            raise PretrainedLoadError(
                f"{pretrained}/{name}: not in the local Hugging Face cache and the Hub cannot be reached "
                f"(offline?); download it once or pass a local folder ({exc.__class__.__name__})"
            ) from None
        except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
            raise PretrainedLoadError(
                f"{pretrained}: Hub repository or revision {revision or 'main'!r} not found ({exc.__class__.__name__})"
            ) from None
        except EntryNotFoundError:
            raise PretrainedLoadError(f"{pretrained}/{name}: missing from the Hub repository") from None
        except (HfHubHTTPError, OSError) as exc:
            raise PretrainedLoadError(f"{pretrained}/{name}: could not be downloaded: {exc}") from None
    return paths[0], paths[1]


def _read_config(
    path: Path, expected_architecture: str, overrides: dict[str, Any], config_class: type = TransMRSRConfig
):
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PretrainedLoadError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PretrainedLoadError(f"{path}: expected a JSON object")
    architecture = data.pop("architecture", expected_architecture)
    if architecture != expected_architecture:
        raise PretrainedLoadError(
            f"{path}: holds a {architecture}, not a {expected_architecture}; load it with {architecture}.from_pretrained"
        )
    data.update(overrides)
    try:
        return config_class.from_dict(data, source=str(path))
    except ConfigError as exc:
        raise PretrainedLoadError(str(exc)) from None


def pretrained_architecture(
    pretrained: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir=None,
    local_files_only: bool = False,
    token=None,
) -> str | None:
    """The class a weights folder or Hub repo was saved from (``"TransMRSR"``, ``"EDSR"``,
    ``"StyleSwinGenerator"``), read from its ``config.json``; ``None`` when that cannot be read
    (then ``from_pretrained`` says why)."""
    try:
        config_path, _ = _resolve_files(
            str(pretrained), revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
        )
        data = json.loads(config_path.read_text())
    except (PretrainedLoadError, OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    architecture = data.get("architecture")
    return architecture if isinstance(architecture, str) else None


def _read_weights(path: Path, map_location) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise PretrainedLoadError(f"{path}: not a readable safetensors file ({exc})") from None


def _load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s), e.g. {missing[:3]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[:3]}")
    if wrong:
        k = wrong[0]
        problems.append(
            f"{len(wrong)} shape mismatch(es), e.g. {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        )
    if problems:
        raise PretrainedLoadError(f"{path}: does not match its config.json: " + "; ".join(problems))
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise PretrainedLoadError(f"{path}: tensor(s) with NaN/Inf, e.g. {bad[:3]}")
    model.load_state_dict(state, strict=True)


def read_model_card(pretrained: str | os.PathLike, revision: str | None = None) -> str | None:
    """The ``README.md`` model card of a weights folder or Hub repo (from the local Hugging Face
    cache, or downloaded), without its YAML front matter; ``None`` when there is none to read."""
    local = Path(pretrained).expanduser()
    path: Path | None = local / "README.md" if local.is_dir() else None
    if path is None and not _looks_like_path(str(pretrained)) and not local.exists():
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(str(pretrained), "README.md", revision=revision))
        except Exception:  # offline, no card, no repo: the card is optional
            return None
    if path is None or not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end != -1:
            text = text[end + 4 :].lstrip("\n")
    return text
