"""Gaussian image denoising with ASAP-Net and the DnCNN baseline.

Library functions:

* :func:`.train.train_denoiser` - supervised L2 (or L1) training on Train400 patches through
  :func:`asapnet.training.loop.train` (no GAN, no VGG), resumable;
* :func:`.evaluate.evaluate_denoiser` - PSNR/SSIM/ms per (dataset, σ) on a folder of clean test images with
  deterministic noise;
* :func:`.run.denoise_files` - run a model on image files.

Value convention (see :mod:`asapnet.data.denoise`): images in [0, 1] inside the models, σ on the
0-255 scale, noise added in float without clipping; metrics on the 0-255 scale after clipping and
rounding the output to 8 bits (as DnCNN's ``im2uint8`` evaluation), data_range 255.

Modules: :mod:`.build` (models, shipped checkpoints), :mod:`.config` (training data, defaults),
:mod:`.train`, :mod:`.evaluate`, :mod:`.run`. The commands (``asapnet train/evaluate --task denoise``,
``asapnet denoise``) also run as ``python -m asapnet.denoise {train,evaluate,denoise} ...``.
"""
