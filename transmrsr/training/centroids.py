"""Self-distilled truncation, step 2: fit the centroids once, after stage 1 (paper §3.3)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ParameterError
from ..models import StyleSwinGenerator
from ..models.truncation import fit_centroids, sample_mapping_latents


def fit_generator_centroids(
    gan_dir: str | Path, num_samples: int = 60000, clusters: int | None = None, seed: int = 0
) -> torch.Tensor:
    """Sample ``num_samples`` latents from the generator's mapping network, k-means them into
    ``clusters`` centroids (default: the config's ``num_centroids``), store them with the
    generator in ``gan_dir`` (rewritten atomically). Returns the centroids ``(K, D)``."""
    gen = StyleSwinGenerator.from_pretrained(gan_dir)
    k = clusters or gen.config.num_centroids
    if k != gen.config.num_centroids:
        raise ParameterError(
            f"{{clusters}} {k} differs from the model's num_centroids {gen.config.num_centroids} (fixed by its preset)",
            params={"clusters": "the number of clusters"},
        )
    latents = sample_mapping_latents(gen.mapping, num_samples, gen.config.style_dim, seed=seed)
    centroids = fit_centroids(latents, k, seed=seed)
    gen.truncation.set_centroids(centroids)
    gen.save_pretrained(gan_dir)
    return centroids
