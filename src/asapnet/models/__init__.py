"""Architectures. Importing this package registers every model with the registry."""
from .registry import create_model, list_models, register_model
from .asap import ASAPGenerator, HRStream, LRStream, positional_encoding
from .discriminator import MultiscaleDiscriminator, PatchDiscriminator

__all__ = ["create_model", "list_models", "register_model", "ASAPGenerator", "HRStream", "LRStream",
           "positional_encoding", "MultiscaleDiscriminator", "PatchDiscriminator"]
