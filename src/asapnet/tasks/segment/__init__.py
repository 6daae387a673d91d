"""A semantic segmentation network for the paper's *segmentation score* (§4.1, Fig. 6, Fig. 11).

The paper runs a DRN-D-105 trained on all of Cityscapes over the generated photos and compares its
prediction with the input label map (19 train classes). That network's weights cannot be
downloaded here, so ``asapnet train --task segment`` trains a torchvision architecture
(LR-ASPP MobileNetV3-Large, Howard et al. 2019; small enough to train on a CPU) from scratch on
the real photos and label maps at hand. Absolute scores are therefore far below the paper's; the
*gap between generated photos and the real-photo ceiling* measured with the same network is the
meaningful number.

Images are float (N, 3, H, W) in [-1, 1]; label maps are the label ids of the segmenter's dataset
(N, H, W) int64. Cityscapes label ids are mapped to the 19 train ids (255 = ignored) with
:func:`asapnet.metrics.segmentation.to_train_ids`; CMP Facades ids 0..11 are used as they are
(:func:`segmentation_targets`). Everything is evaluated at the segmenter's ``size`` (H, W) = 256x512
by default: images are resized bilinearly (antialiased), label maps with nearest neighbour.

Training data (``asapnet train --task segment --dataset ...``): ``cityscapes`` (the
``cityscapes_samples`` layout, default), ``cityscapes-pix2pix`` (the 2975 photos of
``cityscapes_pix2pix/train``, validation on the first ``--holdout`` photos of ``val``) or
``facades`` (``facades_cmp/train``, validation on ``test``).

Checkpoints: ``segmenter.safetensors`` (weights, config in its metadata) + ``segmenter.safetensors.json``.
"""
