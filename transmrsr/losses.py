"""Losses as small modules: L1, VGG19 content and style (paper §3.5), GAN and R1 (stage 1).

VGG19 ImageNet weights are read from a safetensors file in timm's layout (``features.{i}.weight``,
e.g. the Hub repo ``timm/vgg19.tv_in1k``) into our own feature module: neither timm nor
torchvision is needed. Where no weights can be had, :func:`load_vgg19_features` raises
:class:`PerceptualWeightsError` — the perceptual terms are never run with random weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import NamesParameters

#: VGG19 ("E") layer plan: channels or "M" for max-pooling.
_VGG19_PLAN = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
DEFAULT_VGG_REPO = "timm/vgg19.tv_in1k"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class PerceptualWeightsError(NamesParameters, RuntimeError):
    """VGG19 weights for the perceptual loss cannot be loaded (the message names the caller's options,
    :mod:`transmrsr.errors`)."""


class VGG19Features(nn.Module):
    """VGG19 convolutional trunk; ``forward(x, indices)`` returns the outputs of ``features[i]``
    for each requested index (after that module). ``x (B, 1|3, H, W)`` in [0, 1]; a single
    channel is repeated to three, then ImageNet normalisation is applied."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in _VGG19_PLAN:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, indices: list[int]) -> dict[int, torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        want, out = set(indices), {}
        last = max(indices)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in want:
                out[i] = x
            if i >= last:
                break
        return out


def load_vgg19_features(source: str | os.PathLike | None = None, *, local_files_only: bool = False) -> VGG19Features:
    """VGG19 features with ImageNet weights from a safetensors file, a folder holding
    ``model.safetensors``, or a Hub repo id (default ``timm/vgg19.tv_in1k``)."""
    from safetensors.torch import load_file

    src = str(source) if source is not None else DEFAULT_VGG_REPO
    path = Path(src).expanduser()
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.exists():
        if src.startswith((".", "/", "~")) or src.endswith(".safetensors"):
            raise PerceptualWeightsError(f"{path}: VGG19 weights not found")
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(src, "model.safetensors", local_files_only=local_files_only))
        except Exception as exc:
            raise PerceptualWeightsError(
                f"VGG19 ImageNet weights ({src}/model.safetensors) cannot be had here ({exc.__class__.__name__}); "
                "download them once into the Hugging Face cache or give a local copy ({vgg_weights}), or train "
                "without the perceptual terms ({perceptual})",
                params={"vgg_weights": "vgg_weights=FILE", "perceptual": "perceptual=False"},
            ) from None
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise PerceptualWeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    model = VGG19Features()
    wanted = {k for k in model.state_dict()}
    feats = {k: v for k, v in state.items() if k in wanted}
    missing = sorted(wanted - set(feats))
    if missing:
        raise PerceptualWeightsError(f"{path}: not VGG19 weights in timm's layout (missing e.g. {missing[:2]})")
    try:
        model.load_state_dict(feats)
    except RuntimeError as exc:
        raise PerceptualWeightsError(f"{path}: VGG19 weights of the wrong shape ({exc})") from None
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def gram_matrix(feat: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W) -> (B, C, C)``, normalised by ``C * H * W``."""
    b, c, h, w = feat.shape
    f = feat.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


class PerceptualLoss(nn.Module):
    """Content (MSE of VGG19 features) and style (MSE of their Gram matrices) terms.

    ``content_layers`` / ``style_layers`` index ``VGG19Features.features`` (paper: content at
    2, 4, 7, 10). Returns ``(content, style)``.
    """

    def __init__(self, vgg: VGG19Features, content_layers=(2, 4, 7, 10), style_layers=(2, 4, 7, 10)) -> None:
        super().__init__()
        self.vgg = vgg
        self.content_layers, self.style_layers = list(content_layers), list(style_layers)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = sorted(set(self.content_layers) | set(self.style_layers))
        fs = self.vgg(sr, idx)
        with torch.no_grad():
            fh = self.vgg(hr, idx)
        content = sum(F.mse_loss(fs[i], fh[i]) for i in self.content_layers)
        style = sum(F.mse_loss(gram_matrix(fs[i]), gram_matrix(fh[i])) for i in self.style_layers)
        return content, style


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating discriminator loss: ``softplus(-D(x)) + softplus(D(G(z)))``."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: ``softplus(-D(G(z)))``."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1: squared gradient norm of D at real samples (``real`` must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()
