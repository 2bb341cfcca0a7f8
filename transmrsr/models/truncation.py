"""Self-distilled truncation (SDT, paper §3.3, eq. 5).

After stage 1, M latents are sampled from the generator's own mapping network and clustered
into N centroids with k-means. At train and test time every latent vector ``F_l`` is pulled
towards its **nearest** centroid ``c``: ``F_lt = phi * F_l + (1 - phi) * c``.

The authors' public code takes ``argmax`` of the distance, i.e. the *farthest* centroid; the
paper says nearest, and so do we (see README, "Deviations").
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class LatentTruncation(nn.Module):
    """Holds the centroids ``(K, D)`` as buffers (saved with the weights) and applies SDT.

    Until :meth:`set_centroids` is called (``fitted`` is False) it is the identity.
    """

    def __init__(self, num_centroids: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("centroids", torch.zeros(num_centroids, dim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted)

    @torch.no_grad()
    def set_centroids(self, centroids: torch.Tensor | np.ndarray) -> None:
        """Store ``(K, D)`` centroids (K must match ``num_centroids``)."""
        c = centroids.detach() if torch.is_tensor(centroids) else torch.as_tensor(np.asarray(centroids))
        c = c.to(device=self.centroids.device, dtype=self.centroids.dtype)
        if c.shape != self.centroids.shape:
            raise ValueError(f"centroids must have shape {tuple(self.centroids.shape)}, got {tuple(c.shape)}")
        if not torch.isfinite(c).all():
            raise ValueError("centroids contain NaN or Inf")
        self.centroids.copy_(c)
        self.fitted.fill_(True)

    def nearest(self, latents: torch.Tensor) -> torch.Tensor:
        """Nearest centroid (euclidean) for each latent vector: ``(..., D) -> (..., D)``."""
        flat = latents.reshape(-1, latents.shape[-1])
        idx = torch.cdist(flat.float(), self.centroids.float()).argmin(dim=-1)
        return self.centroids[idx].to(latents.dtype).reshape(latents.shape)

    def forward(self, latents: torch.Tensor, phi: float | torch.Tensor) -> torch.Tensor:
        """Truncate ``latents (B, L, D)``; ``phi`` is a float or a per-sample tensor ``(B,)``.

        ``phi = 1`` (or no fitted centroids) returns ``latents`` unchanged.
        """
        if not self.is_fitted:
            return latents
        if not torch.is_tensor(phi):
            if phi == 1.0:
                return latents
            phi_t = torch.tensor(float(phi), dtype=latents.dtype, device=latents.device)
        else:
            phi_t = phi.to(device=latents.device, dtype=latents.dtype)
            if phi_t.ndim == 1:
                if phi_t.shape[0] != latents.shape[0]:
                    raise ValueError(f"phi has {phi_t.shape[0]} values for a batch of {latents.shape[0]}")
                phi_t = phi_t.view(-1, *([1] * (latents.ndim - 1)))
            elif phi_t.ndim != 0:
                raise ValueError(f"phi must be a float, a 0-d tensor or a (B,) tensor, got shape {tuple(phi_t.shape)}")
        return phi_t * latents + (1.0 - phi_t) * self.nearest(latents)


def fit_centroids(latents: torch.Tensor | np.ndarray, n_clusters: int, seed: int = 0) -> torch.Tensor:
    """k-means (scikit-learn) of sampled latents ``(M, D)`` into ``(n_clusters, D)`` centroids."""
    from sklearn.cluster import KMeans

    x = np.asarray(latents.detach().cpu() if torch.is_tensor(latents) else latents, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < n_clusters:
        raise ValueError(f"need an (M, D) array with M >= {n_clusters} latents, got shape {x.shape}")
    km = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit(x)
    return torch.from_numpy(km.cluster_centers_).float()


@torch.no_grad()
def sample_mapping_latents(
    mapping: nn.Module, num_samples: int, style_dim: int, batch_size: int = 4096, seed: int = 0
) -> torch.Tensor:
    """Sample ``w = mapping(z)``, ``z ~ N(0, I)``: returns ``(num_samples, style_dim)`` on CPU."""
    device = next(mapping.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        z = torch.randn(n, style_dim, generator=gen).to(device)
        out.append(mapping(z).float().cpu())
    return torch.cat(out)
