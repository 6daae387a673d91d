"""Architectures. Importing this package registers every model with the registry."""
from .registry import create_model, list_models, model_factory, register_model
from .asap import ASAPGenerator, HRStream, LRStream, positional_encoding
from .discriminator import MultiscaleDiscriminator, PatchDiscriminator
from .pix2pix import Pix2PixUNet
from .pix2pixhd import Pix2PixHDGenerator
from .spade import SPADEGenerator
from .dncnn import DnCNN
from .deblurgan import DeblurGANGenerator, PatchCritic
from .msg_unet import MSGDiscriminator, MSGUNet
from .sadnet import SADNet

__all__ = ["create_model", "list_models", "register_model", "ASAPGenerator", "HRStream", "LRStream",
           "positional_encoding", "MultiscaleDiscriminator", "PatchDiscriminator"]
