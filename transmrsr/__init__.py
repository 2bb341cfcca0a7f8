"""TransMRSR: transformer-based self-distilled generative prior for brain MRI super-resolution."""

from .config import PRESETS, ConfigError, TransMRSRConfig
from .hub import PretrainedLoadError
from .models import EDSR, Discriminator, EDSRConfig, StyleSwinGenerator, TransMRSR, load_sr_model

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "ConfigError",
    "Discriminator",
    "EDSR",
    "EDSRConfig",
    "PretrainedLoadError",
    "StyleSwinGenerator",
    "TransMRSR",
    "TransMRSRConfig",
    "__version__",
    "load_sr_model",
]
