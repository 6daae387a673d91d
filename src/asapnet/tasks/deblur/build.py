"""Deblurring models: the ASAP-Net deblurring preset, the small CPU DeblurGAN, :func:`build_deblur_model`."""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch.nn as nn

from ...config import ASAPConfig
from ...models import create_model

#: ASAP-Net for RGB deblurring: S = 4 (the LR stream sees the image at full resolution), instance
#: norm, no spectral norm, residual output (input + per-pixel MLP output), no tanh.
ASAP_DEBLUR_PRESET: Dict[str, Any] = dict(in_channels=3, out_channels=3, s1=1, s2=4, lr_width=32, lr_max_width=128,
                                          lr_depth=4, hr_width=32, hr_depth=4, norm="instance", spectral_norm=False,
                                          output_activation="none", residual=True, first_norm=False, hr_slope=0.2)


#: Small DeblurGAN of the CPU comparison (the paper's is ngf=64, 9 blocks: ``create_model("deblurgan")``).
DEBLURGAN_CPU: Dict[str, Any] = dict(ngf=16, n_blocks=9, dropout=0.0)


def build_deblur_model(name: str = "deblurgan", **overrides: Any) -> Tuple[nn.Module, Dict[str, Any]]:
    """Create an RGB->RGB deblurring generator and its JSON-able config (stored in checkpoints).

    ``"deblurgan"``: :data:`DEBLURGAN_CPU` + overrides (``create_model("deblurgan")`` is the
    paper's size); ``"asap"``: :data:`ASAP_DEBLUR_PRESET` + overrides, with the near-identity
    hypernetwork initialisation of :func:`asapnet.models.asap.init_asap_hypernetwork`;
    ``"msg_unet"``: 3 -> 3 channels, ``ngf=16, n_down=4, num_outputs=3`` + overrides.

    Raises:
        ValueError: unknown name.
    """
    if name == "deblurgan":
        kw = {**DEBLURGAN_CPU, "in_channels": 3, "out_channels": 3, **overrides}
        return create_model("deblurgan", **kw), kw
    if name == "asap":
        from ...models.asap import init_asap_hypernetwork
        cfg = ASAPConfig(**{**ASAP_DEBLUR_PRESET, **overrides})
        net = create_model("asap", cfg=cfg)
        init_asap_hypernetwork(net)
        return net, cfg.to_dict()
    if name == "msg_unet":
        kw = {"in_channels": 3, "out_channels": 3, "ngf": 16, "n_down": 4, "num_outputs": 3, "norm": "instance",
              **overrides}
        return create_model("msg_unet", **kw), kw
    raise ValueError(f"deblurring model must be deblurgan, asap or msg_unet, got {name!r}")
