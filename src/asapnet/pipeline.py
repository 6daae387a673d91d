"""One call from a name to a picture: :func:`load_model` and :class:`Translator`.

    import asapnet
    translator = asapnet.Translator.from_pretrained("cityscapes")
    photo = translator("examples/cityscapes/frankfurt_000000_000576_gtFine_labelIds.png")  # PIL image
    photo.save("photo.png")

Shipped names resolve to the files in ``asapnet/weights``; any other argument is a path to a
generator ``.safetensors`` written by ``asapnet train``, ``asapnet convert`` or
:func:`asapnet.checkpoint.save_generator`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from .options import shipped_weights

#: Shipped model names -> file in ``asapnet/weights``.
SHIPPED: Dict[str, str] = {
    "cityscapes": "cityscapes.safetensors",
    "facades": "facades.safetensors",
    "dncnn-s-sigma25": "dncnn-s-sigma25.safetensors",
    "sadnet-sigma25": "sadnet-sigma25.safetensors",
    "asap-denoise-blind": "asap-denoise-blind.safetensors",
}


def shipped_models() -> List[str]:
    """Names :func:`load_model` resolves to files shipped inside the package (those present)."""
    return [n for n in SHIPPED if _shipped_path(n).is_file()]


def _shipped_path(name: str) -> Path:
    return shipped_weights(SHIPPED[name])


def resolve(name_or_path: Union[str, Path]) -> Path:
    """A shipped name or a file path -> the ``.safetensors`` path.

    Raises:
        FileNotFoundError: neither a shipped name nor an existing file (the message lists the
            shipped names).
    """
    if isinstance(name_or_path, str) and name_or_path in SHIPPED:
        return _shipped_path(name_or_path)
    p = Path(name_or_path)
    if not p.is_file():
        raise FileNotFoundError(f"{name_or_path}: no such model file, and not a shipped model name "
                                f"({', '.join(SHIPPED)})")
    return p


def load_model(name_or_path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> Tuple[nn.Module, Dict[str, Any]]:
    """Load a shipped model by name or a generator checkpoint by path, ready for inference
    (eval mode, spectral norm folded, on ``device``).

    Returns:
        (model, metadata): the metadata holds ``model``, ``config`` and the training record
        (``num_classes``, ``train_size``, ``command`` ...).

    Raises:
        FileNotFoundError, ValueError: unknown name, missing file, or not an asapnet checkpoint.
    """
    from .checkpoint import load_generator
    from .inference.optimize import prepare_for_inference

    model, meta = load_generator(resolve(name_or_path))
    return prepare_for_inference(model).to(device), meta


LabelInput = Union[str, Path, Image.Image, np.ndarray, torch.Tensor]


class Translator:
    """Label map -> photo with a trained generator.

    ``translator(label)`` takes a label map as a file path, a PIL image, a numpy array or a
    tensor: class ids (H, W) (integers), or a Cityscapes colour label map (H, W, 3) uint8 for
    Cityscapes models; optionally an ``instance`` map of the same kinds (models with an
    instance-edge channel use the label boundaries when none is given). It returns a PIL RGB
    image of the label map's size (``output="pil"``) or a float tensor (3, H, W) in [-1, 1]
    (``output="tensor"``).

    ``Translator("cityscapes")`` (a shipped model name or a ``.safetensors`` path, loaded by
    :func:`load_model`) and ``Translator.from_pretrained(...)`` are the same.

    Args:
        model: a shipped model name (:func:`shipped_models`), a checkpoint path, or a generator
            ``nn.Module`` together with its ``meta``.
        meta: the generator's metadata (see :func:`load_model`); only with a module.
        device: where the model runs; inputs are moved there.
        mode: how inputs larger than the training size are translated
            (:func:`asapnet.tasks.translate.run.run_generator`).

    Raises (on call):
        asapnet.data.io.DataError: unreadable file, ids out of range, size mismatch.
    """

    def __init__(self, model: Union[nn.Module, str, Path] = "cityscapes", meta: Optional[Dict[str, Any]] = None,
                 device: Union[str, torch.device] = "cpu", mode: str = "auto"):
        from .checkpoint import require_translator

        if isinstance(model, (str, Path)):
            if meta is not None:
                raise TypeError("Translator: give meta only with a model module, not with a name or path")
            model, meta = load_model(model, device)
        elif meta is None:
            raise TypeError("Translator(module) needs the module's metadata: Translator(model, meta) with "
                            "(model, meta) = asapnet.load_model(...), or Translator('cityscapes')")

        self.num_classes, self.use_instance = require_translator(model, meta, meta.get("path", "model"))
        self.model, self.meta, self.device, self.mode = model.to(device).eval(), meta, torch.device(device), mode
        self.warnings: List[str] = []

    @classmethod
    def from_pretrained(cls, name_or_path: Union[str, Path] = "cityscapes", device: Union[str, torch.device] = "cpu",
                        mode: str = "auto") -> "Translator":
        """A translator for a shipped model name (default: the Cityscapes model) or a checkpoint path."""
        return cls(name_or_path, None, device, mode)

    @staticmethod
    def _array(label: LabelInput) -> Union[Path, np.ndarray]:
        """A path stays a path (read by the file readers); anything else becomes a numpy array."""
        if isinstance(label, (str, Path)):
            return Path(label)
        if isinstance(label, Image.Image):
            return np.asarray(label.convert("RGB") if label.mode in ("RGB", "RGBA") else label)
        return label.cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)

    def encode(self, label: LabelInput, instance: Optional[LabelInput] = None) -> torch.Tensor:
        """The generator input (1, num_classes [+1], H, W) float32 of a label map (+ instance
        map): class ids or Cityscapes colours as in the model's training files (CMP Facades:
        ids 1..12), read by :func:`asapnet.tasks.translate.run.label_ids_from_array`."""
        from .data.io import read_label
        from .tasks.translate.run import encode_labels, label_ids_from_array, read_label_ids

        merge = self.meta.get("label_ids")
        lab = self._array(label)
        if isinstance(lab, Path):
            ids, source = read_label_ids(lab, self.num_classes, merge), str(lab)
        else:
            ids, source = label_ids_from_array(lab, self.num_classes, merge), "label map"
        inst = None
        if self.use_instance and instance is not None:
            inst = self._array(instance)
            inst = read_label(inst) if isinstance(inst, Path) else inst
        return encode_labels(ids, self.num_classes, self.use_instance, inst, source, log=self.warnings.append)

    @torch.inference_mode()
    def __call__(self, label: LabelInput, instance: Optional[LabelInput] = None, output: str = "pil"):
        from .tasks.translate.run import model_train_size, run_generator

        if output not in ("pil", "tensor"):
            raise ValueError(f"output must be 'pil' or 'tensor', got {output!r}")
        x = self.encode(label, instance).to(self.device)
        y = run_generator(self.model, x, model_train_size(self.meta), self.mode)[0].float().cpu()
        if output == "tensor":
            return y
        return Image.fromarray(((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())
