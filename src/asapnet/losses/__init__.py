"""Training losses: hinge GAN, feature matching, VGG perceptual."""
from .perceptual import PretrainedWeightsUnavailable, VGGPerceptualLoss
from .gan import feature_matching_loss, hinge_d_loss, hinge_g_loss

__all__ = ["PretrainedWeightsUnavailable", "VGGPerceptualLoss", "feature_matching_loss", "hinge_d_loss",
           "hinge_g_loss"]
