"""TransMRSR: transformer-based self-distilled generative prior for brain MRI super-resolution."""

from .config import PRESETS, ConfigError, TransMRSRConfig
from .hub import PretrainedLoadError
from .models import Discriminator, StyleSwinGenerator, TransMRSR

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "ConfigError",
    "Discriminator",
    "PretrainedLoadError",
    "StyleSwinGenerator",
    "TransMRSR",
    "TransMRSRConfig",
    "__version__",
]
