"""Image-quality metrics (torchmetrics), on the 0-255 scale."""
from .image import psnr_ssim, to_255

__all__ = ["psnr_ssim", "to_255"]
