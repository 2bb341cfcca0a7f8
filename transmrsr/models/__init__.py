"""TransMRSR network parts (pure PyTorch), and the EDSR baseline."""

from __future__ import annotations

import os
from typing import Any

from .cpu_engine import accelerate_for_cpu, as_reference
from .edsr import EDSR, EDSRConfig
from .styleswin import Discriminator, MappingNetwork, StyleSwinGenerator, StyleSwinSynthesis
from .transmrsr import ChannelWiseScaleShift, LatentHead, TransMRSR
from .truncation import LatentTruncation, fit_centroids, sample_mapping_latents


def load_sr_model(pretrained: str | os.PathLike, **kwargs: Any) -> TransMRSR | EDSR:
    """``from_pretrained`` of whichever SR network a folder / Hub repo holds: an EDSR baseline
    when its ``config.json`` says so, else TransMRSR (whose errors then name the problem)."""
    from ..hub import pretrained_architecture

    where = {k: kwargs[k] for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
    cls = EDSR if pretrained_architecture(pretrained, **where) == "EDSR" else TransMRSR
    return cls.from_pretrained(pretrained, **kwargs)


__all__ = [
    "EDSR",
    "ChannelWiseScaleShift",
    "Discriminator",
    "EDSRConfig",
    "LatentHead",
    "LatentTruncation",
    "MappingNetwork",
    "StyleSwinGenerator",
    "StyleSwinSynthesis",
    "TransMRSR",
    "accelerate_for_cpu",
    "as_reference",
    "fit_centroids",
    "load_sr_model",
    "sample_mapping_latents",
]
