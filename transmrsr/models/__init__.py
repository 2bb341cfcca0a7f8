"""TransMRSR network parts (pure PyTorch)."""

from .styleswin import Discriminator, MappingNetwork, StyleSwinGenerator, StyleSwinSynthesis
from .transmrsr import ChannelWiseScaleShift, LatentHead, TransMRSR
from .truncation import LatentTruncation, fit_centroids, sample_mapping_latents

__all__ = [
    "ChannelWiseScaleShift",
    "Discriminator",
    "LatentHead",
    "LatentTruncation",
    "MappingNetwork",
    "StyleSwinGenerator",
    "StyleSwinSynthesis",
    "TransMRSR",
    "fit_centroids",
    "sample_mapping_latents",
]
