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
Errors: 400 {"error": message naming the file} for bad files, 404 unknown example or path,
411/413 missing or oversized body. Uploads are read through :mod:`asapnet.data.io`, so corrupt
files and decompression bombs give the same one-line errors as the command line.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import re
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from .data.io import DataError
from .models.inference import prepare_for_inference
from .translate import find_instance_map, label_to_input, model_train_size, run_generator

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
        max_pixels: largest label map translated, in pixels (H * W); bigger uploads get a 400.
    """

    examples_dir: Optional[Path] = None
    max_upload_bytes: int = 48 * 2 ** 20
    max_pixels: int = 2048 * 2048


def find_examples_dir(explicit: Optional[str] = None) -> Optional[Path]:
    """Folder of the shipped examples: ``explicit``, else ``asapnet/examples/cityscapes`` inside
    the installed package, else ``examples/cityscapes`` of the source checkout; ``None`` if none
    has a ``*_gtFine_labelIds.png``."""
    cands = [Path(explicit)] if explicit else []
    cands.append(Path(str(resources.files("asapnet") / "examples" / "cityscapes")))
    cands.append(Path(__file__).resolve().parents[2] / "examples" / "cityscapes")
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
    """

    def __init__(self, model: nn.Module, meta: Dict, cfg: DemoConfig, name: str = "model"):
        self.model, self.meta, self.cfg, self.name = prepare_for_inference(model), meta, cfg, name
        self.num_classes = int(meta.get("num_classes") or model.cfg.in_channels)
        self.use_instance = bool(meta.get("use_instance", False))
        colors = CITYSCAPES_COLORS if self.num_classes == len(CITYSCAPES_COLORS) else \
            np.random.default_rng(12345).integers(0, 256, (self.num_classes, 3))
        self.colors = np.asarray(colors, dtype=np.uint8)
        self._lock = threading.Lock()
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
            DataError: unreadable file, ids out of range, size mismatch, or more than
                ``cfg.max_pixels`` pixels (the message names the file).
        """
        try:
            with Image.open(label) as im:
                w, h = im.size
        except Exception:
            w = h = 0  # label_to_input below gives the precise error
        if w * h > self.cfg.max_pixels:
            raise DataError(f"{label}: {w}x{h} is larger than this demo accepts ({self.cfg.max_pixels} pixels)")
        warnings: List[str] = []
        x = label_to_input(label, self.num_classes, self.use_instance, instance if self.use_instance else None,
                           merge=self.meta.get("label_ids"), log=warnings.append)
        with self._lock, torch.no_grad():
            t = time.perf_counter()
            y = run_generator(self.model, x, model_train_size(self.meta))
            ms = (time.perf_counter() - t) * 1000
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
        """Translate uploaded (file name, bytes) pairs; errors name the uploaded file."""
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
                raise DataError(re.sub(re.escape(tmp) + r"/\d/", "", str(e))) from None


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


class DemoHandler(BaseHTTPRequestHandler):
    """Request handler; the server's ``app`` attribute is the :class:`DemoApp`."""

    server_version = "asapnet-demo"
    quiet = True

    def log_message(self, fmt, *args):  # noqa: D401 - http.server API
        if not self.quiet:
            super().log_message(fmt, *args)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, obj: Dict) -> None:
        self._send(code, json.dumps(obj).encode(), "application/json")

    def do_GET(self):
        app: DemoApp = self.server.app
        if self.path in ("/", "/index.html"):
            self._send(200, PAGE.encode(), "text/html; charset=utf-8")
        elif self.path == "/api/info":
            self._json(200, app.info())
        else:
            self._json(404, {"error": f"no such page: {self.path}"})

    def do_POST(self):
        app: DemoApp = self.server.app
        if self.path != "/api/translate":
            return self._json(404, {"error": f"no such endpoint: {self.path}"})
        try:
            n = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._json(411, {"error": "Content-Length required"})
        if n > app.cfg.max_upload_bytes or n < 0:
            self.close_connection = True
            return self._json(413, {"error": f"request of {n} bytes exceeds {app.cfg.max_upload_bytes} bytes"})
        try:
            req = json.loads(self.rfile.read(n) or b"{}")
            if not isinstance(req, dict):
                raise ValueError("expected a JSON object")
        except ValueError as e:
            return self._json(400, {"error": f"bad request: {e}"})
        try:
            if "example" in req:
                res = app.translate_example(str(req["example"]))
            elif "label" in req:
                res = app.translate_upload(_decode_file(req["label"], "label"), _decode_file(req.get("instance"), "instance"))
            else:
                return self._json(400, {"error": "give 'example' or 'label'"})
        except KeyError as e:
            return self._json(404, {"error": f"unknown example {e}"})
        except DataError as e:
            return self._json(400, {"error": str(e)})
        self._json(200, res)


def make_server(app: DemoApp, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """An HTTP server for ``app`` (not started; ``port=0`` picks a free port, see
    ``server.server_address``). Call ``serve_forever()`` and, to stop, ``shutdown()``."""
    server = ThreadingHTTPServer((host, port), DemoHandler)
    server.daemon_threads = True
    server.app = app
    return server


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ASAP-Net demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; max-width: 1100px; }
 h1 { font-size: 1.4rem; margin: 0 0 .3rem; } .sub { color: #666; margin-bottom: 1rem; }
 fieldset { border: 1px solid #ccc; border-radius: 6px; margin: 0 0 .8rem; padding: .6rem .9rem; }
 legend { font-weight: 600; } button { padding: .35rem .9rem; }
 .row { display: flex; gap: .8rem 1.2rem; align-items: center; flex-wrap: wrap; }
 #error { color: #b00020; white-space: pre-wrap; min-height: 1.2em; }
 #runtime { font-size: 1.1rem; font-weight: 600; min-height: 1.3em; }
 .imgs { display: flex; gap: 12px; flex-wrap: wrap; } figure { margin: 0; flex: 1 1 400px; }
 figure img { width: 100%; border: 1px solid #ddd; background: #f4f4f4; min-height: 60px; }
 figcaption { color: #555; font-size: .9rem; }
</style></head>
<body>
<h1>ASAP-Net: label map &rarr; photo</h1>
<div class="sub" id="model">loading model info&hellip;</div>
<fieldset><legend>Shipped example</legend><div class="row">
 <select id="example"></select><button id="run-example">Translate example</button></div></fieldset>
<fieldset><legend>Your label map</legend><div class="row">
 <label>label map (class-id PNG) <input type="file" id="label" accept="image/*"></label>
 <label id="inst-label">instance map <input type="file" id="instance" accept="image/*"></label>
 <button id="run-upload">Translate upload</button></div></fieldset>
<div id="runtime"></div><div id="error"></div>
<div class="imgs">
 <figure><img id="input" alt="label map"><figcaption>label map (colourised)</figcaption></figure>
 <figure><img id="result" alt="translation"><figcaption id="result-caption">translation</figcaption></figure>
</div>
<script>
const $ = (id) => document.getElementById(id);
async function info() {
  const r = await (await fetch('/api/info')).json();
  $('model').textContent = `model: ${r.model} · ${r.num_classes} classes` +
    (r.use_instance ? ' + instance edges' : '') + ` · ${r.threads} CPU thread(s)`;
  for (const name of r.examples) { const o = document.createElement('option'); o.value = o.textContent = name; $('example').appendChild(o); }
  if (!r.examples.length) { $('run-example').disabled = true; }
  $('inst-label').firstChild.textContent = r.use_instance ? 'instance map (needed) ' : 'instance map (not used) ';
}
function readFile(input) {
  const f = input.files[0];
  if (!f) return Promise.resolve(null);
  return new Promise((ok, fail) => { const rd = new FileReader();
    rd.onload = () => ok({name: f.name, data: rd.result.split(',', 2)[1] || ''}); rd.onerror = fail; rd.readAsDataURL(f); });
}
async function translate(body) {
  $('error').textContent = ''; $('runtime').textContent = 'translating…';
  $('result').removeAttribute('src'); $('input').removeAttribute('src');
  try {
    const resp = await fetch('/api/translate', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
    const r = await resp.json();
    if (!resp.ok) { $('runtime').textContent = ''; $('error').textContent = r.error; return; }
    $('input').src = r.input; $('result').src = r.output;
    $('result-caption').textContent = `translation, ${r.width}x${r.height}`;
    $('runtime').textContent = `runtime: ${r.ms} ms (forward pass, ${r.width}x${r.height})`;
  } catch (e) { $('runtime').textContent = ''; $('error').textContent = String(e); }
}
$('run-example').onclick = () => translate({example: $('example').value});
$('run-upload').onclick = async () => {
  const label = await readFile($('label'));
  if (!label) { $('error').textContent = 'choose a label map first'; return; }
  const instance = await readFile($('instance'));
  translate(instance ? {label, instance} : {label});
};
info();
</script></body></html>
"""


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def add_demo_parser(sub) -> argparse.ArgumentParser:
    """Add ``asapnet demo`` to an argparse subparsers object."""
    p = sub.add_parser("demo", help="serve a local web page that translates label maps")
    p.add_argument("--checkpoint", default=None, help="generator .safetensors (default: the shipped model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0 = any free port)")
    p.add_argument("--examples", default=None, help="folder of *_gtFine_labelIds.png examples")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--verbose", action="store_true", help="log every request")
    return p


def cmd_demo(a: argparse.Namespace) -> int:
    """Run ``asapnet demo`` until Ctrl-C. Returns 0."""
    from .checkpoint import load_generator
    from .translate import default_checkpoint

    if a.threads:
        torch.set_num_threads(a.threads)
    ckpt = Path(a.checkpoint) if a.checkpoint else default_checkpoint()
    model, meta = load_generator(ckpt)
    app = DemoApp(model, meta, DemoConfig(examples_dir=find_examples_dir(a.examples)),
                  name=f"{ckpt.name} ({meta['model']}, step {meta.get('step', '?')})")
    DemoHandler.quiet = not a.verbose
    server = make_server(app, a.host, a.port)
    host, port = server.server_address[:2]
    print(f"asapnet demo: serving {ckpt} on http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
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
