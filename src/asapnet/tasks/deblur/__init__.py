"""Motion deblurring with DeblurGAN, ASAP-Net and the MSG U-Net.

Library functions:

* :class:`asapnet.training.gan_variants.WGANGPTrainer` - DeblurGAN's optimisation (CVPR 2018 §3.1): a PatchGAN critic trained
  with the Wasserstein loss and gradient penalty (λ_GP = 10, 5 critic steps per generator step),
  the generator with -E[D(G(x))] + λ_content * MSE(VGG19 conv3_3) (λ 100) (+ optional L1); Adam
  lr 1e-4, betas (0.5, 0.999). It is a :class:`asapnet.training.trainer.Trainer`, so checkpoints are the
  atomic safetensors files of :mod:`asapnet.checkpoint` and ``train(..., resume=True)`` resumes.
* :class:`asapnet.training.gan_variants.MSGTrainer` - MSG U-Net training (hinge GAN with one PatchGAN per output scale,
  feature matching, optional VGG/L1), for label->photo and image->image.
* :func:`.train.train_deblur` - train a generator on synthetic blur (:mod:`asapnet.data.blur`) or on
  GoPro-style pairs, optionally within a wall-clock budget.
* :func:`.evaluate.evaluate_deblur` - PSNR/SSIM (and FID when its weights exist) on a held-out set with
  deterministic blur, for several models side by side (the blurred input is the first row).
* :func:`.run.deblur_files`, :func:`.evaluate.time_models`.

Value convention: images are float32 (N, 3, H, W) in [-1, 1] inside the models; metrics are on
the 0-255 scale (data_range 255) after rounding outputs to 8 bits, PSNR per image then averaged,
SSIM with torchmetrics' 11x11 Gaussian window.

Modules: :mod:`.build` (models), :mod:`.config` (data split, training data, defaults), :mod:`.train`,
:mod:`.evaluate`, :mod:`.run`. The commands (``asapnet train/evaluate --task deblur``, ``asapnet deblur``)
also run as ``python -m asapnet.deblur {train,evaluate,deblur} ...``.
"""
