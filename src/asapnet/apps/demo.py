"""``asapnet demo``: a local web page that translates label maps with a trained generator.

    asapnet demo [--checkpoint PATH] [--port 8000]   # then open http://127.0.0.1:8000/

The user picks a shipped Cityscapes example or uploads a label map (class-id PNG) and, for models
that use them, an instance map; the page shows the colourised label map, the translation and the
runtime of the forward pass in milliseconds. Standard library only (``http.server``).

HTTP API (JSON in, JSON out):
  GET  /                  the page
  GET  /api/info          {"model", "num_classes", "use_instance", "threads", "examples": [names]}
  POST /api/translate     {"example": name} or {"label": {"name", "data"}, "instance": {...}}
                          with ``data`` the base64 file bytes ->
                          {"output", "input": PNG data URLs, "width", "height", "ms"}
Every error is JSON ``{"error": message}``: 400 bad files (the message names the file) or bad
JSON (also NaN/Infinity and deep nesting), 403 a POST that is not ``Content-Type:
application/json`` from the same origin (``Origin`` absent or ``http://<Host>``; on a loopback
address also a ``Host`` that is not a loopback name), 404 unknown example or path, 408 a body not
sent in time, 411/413 missing or oversized body (checked from ``Content-Length`` before reading),
413 an image (label or instance map) of more than ``max_pixels`` pixels, refused from its header
before it is decoded, 503 ``{"error": "busy, retry"}`` (``Retry-After``) when ``max_concurrent``
translations are already running or every connection slot is taken, 500 a bug. Uploads are
read through :mod:`asapnet.data.io`, so corrupt files give the same one-line errors as the
command line. Hardening (timeouts, connection cap, same-origin rule): :mod:`asapnet.apps.httpguard`.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import logging
import re
import signal
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from ..data.io import DataError
from .httpguard import (DEFAULT_MAX_CONNECTIONS, DEFAULT_TIMEOUT, RETRY_AFTER, GuardedHandler, GuardedHTTPServer,
                        Reject, exposure_warning)
from ..inference.optimize import prepare_for_inference
from ..tasks.translate.run import find_instance_map, label_to_input, model_train_size, run_generator

logger = logging.getLogger(__name__)

#: Colours of the 35 Cityscapes label ids (cityscapesScripts ``labels.py``), for the input preview.
CITYSCAPES_COLORS = [
    (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (111, 74, 0), (81, 0, 81), (128, 64, 128),
    (244, 35, 232), (250, 170, 160), (230, 150, 140), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (180, 165, 180), (150, 100, 100), (150, 120, 90), (153, 153, 153), (153, 153, 153), (250, 170, 30),
    (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142),
    (0, 0, 70), (0, 60, 100), (0, 0, 90), (0, 0, 110), (0, 80, 100), (0, 0, 230), (119, 11, 32), (0, 0, 142),
]

LABEL_SUFFIX = "_gtFine_labelIds.png"


@dataclass
class DemoConfig:
    """Options of :class:`DemoApp`.

    Attributes:
        examples_dir: folder of example label maps (``*_gtFine_labelIds.png`` with their
            ``*_gtFine_instanceIds.png``); ``None`` = no examples.
        max_upload_bytes: largest accepted request body (base64 JSON), in bytes.
        max_pixels: largest label map (and instance map) translated, in pixels (H * W), checked
            from the image header before decoding; bigger ones raise :class:`ImageTooLarge` (413).
        max_concurrent: translations run at once; a request beyond that is answered 503 (on a CPU
            one forward pass already uses every thread, and each 2048 x 2048 request needs
            about 1.5 GB while it runs).
    """

    examples_dir: Optional[Path] = None
    max_upload_bytes: int = 48 * 2 ** 20
    max_pixels: int = 2048 * 2048
    max_concurrent: int = 1


class ImageTooLarge(DataError):
    """An image with more pixels than the demo accepts (HTTP 413)."""


def check_pixels(src, name: str, limit: int) -> None:
    """Refuse an image of more than ``limit`` pixels from its header alone: Pillow's
    ``Image.open`` reads the header lazily, so nothing is decoded or allocated here. ``src`` is a
    path or the file's bytes; files Pillow cannot identify pass (the reader reports them).

    Raises:
        ImageTooLarge: naming ``name``, the size and the limit.
    """
    try:
        with warnings.catch_warnings():  # the size is judged below, against our own limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src) as im:
                w, h = im.size
    except Image.DecompressionBombError as e:  # more than twice Pillow's own limit, from the header
        raise ImageTooLarge(f"{name}: image is larger than this demo accepts ({limit} pixels): {e}") from None
    except Exception:
        return
    if w * h > limit:
        raise ImageTooLarge(f"{name}: {w}x{h} is larger than this demo accepts ({limit} pixels)")


def find_examples_dir(explicit: Optional[str] = None) -> Optional[Path]:
    """Folder of the shipped examples: ``explicit``, else ``asapnet/examples/cityscapes`` inside
    the installed package, else ``examples/cityscapes`` of the source checkout; ``None`` if none
    has a ``*_gtFine_labelIds.png``."""
    cands = [Path(explicit)] if explicit else []
    cands.append(Path(str(resources.files("asapnet") / "examples" / "cityscapes")))
    cands.append(Path(__file__).resolve().parents[3] / "examples" / "cityscapes")
    return next((c for c in cands if c.is_dir() and any(c.glob(f"*{LABEL_SUFFIX}"))), None)


def _data_url(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _safe_name(name: str) -> str:
    """A client file name reduced to a harmless basename (letters, digits, ``._-``)."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(str(name or "")).name)[-100:].lstrip(".")
    return base or "upload.png"


class DemoApp:
    """The demo's logic, independent of HTTP: examples, uploads -> translations.

    Args:
        model: generator mapping (1, C, H, W) inputs to (1, 3, H, W) in [-1, 1]; it is put in
            eval mode with spectral norm folded (:func:`prepare_for_inference`, in place).
        meta: checkpoint metadata (``num_classes``, ``use_instance``; see
            :func:`asapnet.checkpoint.load_generator`).
        cfg: demo options.
        name: model description shown on the page.
        device: where the model runs (it is moved there); label maps go there, translations
            come back to the CPU to be encoded.
    """

    def __init__(self, model: nn.Module, meta: Dict, cfg: DemoConfig, name: str = "model",
                 device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.model, self.meta, self.cfg, self.name = prepare_for_inference(model.to(self.device)), meta, cfg, name
        from ..checkpoint import require_translator

        self.num_classes, self.use_instance = require_translator(model, meta, meta.get("path", "checkpoint"))
        colors = CITYSCAPES_COLORS if self.num_classes == len(CITYSCAPES_COLORS) else \
            np.random.default_rng(12345).integers(0, 256, (self.num_classes, 3))
        self.colors = np.asarray(colors, dtype=np.uint8)
        self._lock = threading.Lock()
        if cfg.max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {cfg.max_concurrent}")
        #: one slot per translation allowed at once (the HTTP handler answers 503 when none is free)
        self.slots = threading.BoundedSemaphore(cfg.max_concurrent)
        self.threads = torch.get_num_threads()  # read here: torch calls from handler threads are kept to inference

    def examples(self) -> List[str]:
        """Names of the example label maps (file names without ``_gtFine_labelIds.png``)."""
        d = self.cfg.examples_dir
        return sorted(f.name[: -len(LABEL_SUFFIX)] for f in d.glob(f"*{LABEL_SUFFIX}")) if d else []

    def info(self) -> Dict:
        return {"model": self.name, "num_classes": self.num_classes, "use_instance": self.use_instance,
                "threads": self.threads, "examples": self.examples()}

    def translate_files(self, label: Path, instance: Optional[Path] = None) -> Dict:
        """Translate one label map (+ instance map) file.

        Returns:
            {"output", "input": PNG data URLs (translation, colourised labels), "width", "height",
            "ms": forward-pass milliseconds, "warning" (only when a model with an instance-edge
            channel got no instance map: the label boundaries are used)}.

        Raises:
            DataError: unreadable file, ids out of range, size mismatch.
            ImageTooLarge: the label or instance map has more than ``cfg.max_pixels`` pixels
                (checked from the headers, before either is decoded).
        """
        check_pixels(label, str(label), self.cfg.max_pixels)
        if self.use_instance and instance is not None:
            check_pixels(instance, str(instance), self.cfg.max_pixels)
        warnings: List[str] = []
        x = label_to_input(label, self.num_classes, self.use_instance, instance if self.use_instance else None,
                           merge=self.meta.get("label_ids"), log=warnings.append)
        from ..inference.optimize import synchronize

        with self._lock, torch.no_grad():
            t = time.perf_counter()
            y = run_generator(self.model, x.to(self.device), model_train_size(self.meta))
            synchronize(y.device)
            ms = (time.perf_counter() - t) * 1000
            y = y.float().cpu()
        out = ((y[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        ids = x[0, :self.num_classes].argmax(0).numpy()
        res = {"output": _data_url(out), "input": _data_url(self.colors[ids]), "width": int(out.shape[1]),
               "height": int(out.shape[0]), "ms": round(ms, 1)}
        if warnings:
            res["warning"] = " ".join(w.split(": ", 2)[-1] for w in warnings)  # no server paths
        return res

    def translate_example(self, name: str) -> Dict:
        """Translate the example ``name`` (one of :meth:`examples`). Raises KeyError if unknown."""
        if name not in self.examples():
            raise KeyError(name)
        label = self.cfg.examples_dir / f"{name}{LABEL_SUFFIX}"
        return self.translate_files(label, find_instance_map(label))

    def translate_upload(self, label: Tuple[str, bytes], instance: Optional[Tuple[str, bytes]] = None) -> Dict:
        """Translate uploaded (file name, bytes) pairs; errors name the uploaded file. Both images'
        sizes are checked from their headers first (:class:`ImageTooLarge`)."""
        for item in (label, instance if self.use_instance else None):
            if item is not None:
                check_pixels(item[1], _safe_name(item[0]), self.cfg.max_pixels)
        with tempfile.TemporaryDirectory(prefix="asapnet-demo-") as tmp:
            paths = []
            for i, item in enumerate((label, instance)):
                if item is None:
                    paths.append(None)
                    continue
                p = Path(tmp) / str(i) / _safe_name(item[0])
                p.parent.mkdir()
                p.write_bytes(item[1])
                paths.append(p)
            try:
                return self.translate_files(paths[0], paths[1])
            except DataError as e:
                raise type(e)(re.sub(re.escape(tmp) + r"/\d/", "", str(e))) from None


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


def _decode_file(obj, what: str) -> Optional[Tuple[str, bytes]]:
    if obj is None:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), str):
        raise DataError(f"{what}: expected {{'name': ..., 'data': base64}}")
    try:
        return str(obj.get("name") or f"{what}.png"), base64.b64decode(obj["data"], validate=True)
    except (binascii.Error, ValueError):
        raise DataError(f"{_safe_name(obj.get('name') or what)}: upload is not valid base64") from None


class DemoHandler(GuardedHandler):
    """Request handler; the server's ``app`` attribute is the :class:`DemoApp`. Timeouts, the
    same-origin rule and JSON errors come from :class:`asapnet.apps.httpguard.GuardedHandler`."""

    server_version = "asapnet-demo"

    def get(self):
        app: DemoApp = self.server.app
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(200, _page(), "text/html; charset=utf-8", {"X-Frame-Options": "DENY"})
        elif path == "/api/info":
            self._json(200, app.info())
        else:
            raise Reject(404, f"no such page: {self.path}")

    def post(self):
        app: DemoApp = self.server.app
        if self.path.split("?", 1)[0] != "/api/translate":
            raise Reject(404, f"no such endpoint: {self.path}")
        held = []

        def take_slot():  # before the body is read: a busy server holds no second upload in memory
            if not app.slots.acquire(blocking=False):
                raise Reject(503, "busy, retry", {"Retry-After": str(RETRY_AFTER)})
            held.append(True)

        try:
            req = self.read_json(app.cfg.max_upload_bytes, before_read=take_slot)
            body = json.dumps(self._translate(app, req)).encode()
        finally:
            if held:
                app.slots.release()
        self._send(200, body, "application/json")

    @staticmethod
    def _translate(app: DemoApp, req) -> Dict:
        if not isinstance(req, dict):
            raise Reject(400, "bad request: expected a JSON object")
        try:
            if "example" in req:
                return app.translate_example(str(req["example"]))
            if "label" in req:
                return app.translate_upload(_decode_file(req["label"], "label"),
                                            _decode_file(req.get("instance"), "instance"))
        except KeyError as e:
            raise Reject(404, f"unknown example {e}") from None
        except ImageTooLarge as e:
            raise Reject(413, str(e)) from None
        except DataError as e:
            raise Reject(400, str(e)) from None
        raise Reject(400, "give 'example' or 'label'")


def make_server(app: DemoApp, host: str = "127.0.0.1", port: int = 8000, timeout: Optional[float] = DEFAULT_TIMEOUT,
                max_connections: int = DEFAULT_MAX_CONNECTIONS) -> GuardedHTTPServer:
    """An HTTP server for ``app`` (not started; ``port=0`` picks a free port, see
    ``server.server_address``). Call ``serve_forever()`` and, to stop, ``shutdown()``.

    ``timeout``: seconds a socket read may wait before a stalled client is dropped;
    ``max_connections``: connection threads at most (more connections get 503).
    """
    handler = type("DemoHandler", (DemoHandler,), {"timeout": timeout, "max_body": app.cfg.max_upload_bytes})
    server = GuardedHTTPServer((host, port), handler, max_connections=max_connections)
    server.app = app
    return server


def _page() -> bytes:
    """The demo's single page (``asapnet/static/demo.html``)."""
    return (resources.files("asapnet") / "static" / "demo.html").read_bytes()


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def cmd_demo(a: argparse.Namespace) -> int:
    """Run ``asapnet demo`` until Ctrl-C. Returns 0."""
    from ..checkpoint import load_generator
    from ..tasks.translate.run import default_checkpoint

    for opt in ("max_concurrent", "max_connections"):
        if getattr(a, opt, 1) < 1:
            raise ValueError(f"--{opt.replace('_', '-')} must be >= 1, got {getattr(a, opt)}")
    if getattr(a, "timeout", DEFAULT_TIMEOUT) <= 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {a.timeout}")
    if a.threads:
        torch.set_num_threads(a.threads)
    ckpt = Path(a.checkpoint) if a.checkpoint else default_checkpoint()
    model, meta = load_generator(ckpt)
    cfg = DemoConfig(examples_dir=find_examples_dir(a.examples), max_concurrent=getattr(a, "max_concurrent", 1))
    app = DemoApp(model, meta, cfg, name=f"{ckpt.name} ({meta['model']}, step {meta.get('step', '?')})",
                  device=getattr(a, "device", "cpu") or "cpu")
    DemoHandler.quiet = not a.verbose
    server = make_server(app, a.host, a.port, timeout=getattr(a, "timeout", DEFAULT_TIMEOUT),
                         max_connections=getattr(a, "max_connections", DEFAULT_MAX_CONNECTIONS))
    host, port = server.server_address[:2]
    # the command's result, on stdout (scripts read the address from it)
    print(f"asapnet demo: serving {ckpt} on http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    warning = exposure_warning("asapnet demo", host, port)
    if warning:
        logger.warning(warning)
    # Ctrl-C / SIGTERM stop the loop from a helper thread, so serve_forever returns normally
    # instead of a KeyboardInterrupt unwinding through whatever C call the main thread is in.
    stop = lambda *_: threading.Thread(target=server.shutdown, daemon=True).start()  # noqa: E731
    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_forever()
    finally:
        server.server_close()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return 0
