"""Gaussian denoising with ASAP-Net, DnCNN and SADNet."""
