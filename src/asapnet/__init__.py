"""asapnet: fast image-to-image translation with Spatially-Adaptive Pixelwise Networks.

Shaham, Gharbi, Zhang, Shechtman, Michaeli. "Spatially-Adaptive Pixelwise Networks for Fast
Image Translation", CVPR 2021.
"""
from .config import ASAPConfig, DiscriminatorConfig, TrainConfig, asap_preset, ASAP_PRESETS
from .models import create_model, list_models, register_model
from .pipeline import Translator, load_model, shipped_models

__version__ = "0.1.0"
__all__ = ["ASAPConfig", "DiscriminatorConfig", "TrainConfig", "asap_preset", "ASAP_PRESETS",
           "create_model", "list_models", "register_model", "load_model", "shipped_models", "Translator",
           "__version__"]
