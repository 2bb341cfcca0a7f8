"""Two-stage training: StyleSwin prior (stage 1), centroid fit, SR fine-tuning (stage 2)."""

from .centroids import fit_generator_centroids
from .gan import train_gan
from .sr import build_sr_model, train_sr

__all__ = ["build_sr_model", "fit_generator_centroids", "train_gan", "train_sr"]
