"""Datasets and file readers."""
from .io import DataError, list_images, read_image, read_label
from .labels import instance_edges, one_hot
from .datasets import (AlignedABDataset, LabelPhotoDataset, Pair, cityscapes_pairs, data_root,
                       pairs_from_folders, to_float_image)

__all__ = ["DataError", "list_images", "read_image", "read_label", "instance_edges", "one_hot",
           "AlignedABDataset", "LabelPhotoDataset", "Pair", "cityscapes_pairs", "data_root",
           "pairs_from_folders", "to_float_image"]
