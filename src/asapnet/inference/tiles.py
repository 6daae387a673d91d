"""The HR stream's fast CPU inference path (ASAP-Net paper §3.1, evaluated tile by tile): the per-tile
weights transposed once per image, tile groups as batched products into reused buffers, shared among
tile-worker threads. :meth:`asapnet.models.asap.HRStream.forward` dispatches here at inference; the
reference path stays in :mod:`asapnet.models.asap`."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, List, Tuple

import torch
import torch.nn.functional as F

from ..models.asap import positional_encoding

if TYPE_CHECKING:
    from ..models.asap import HRStream


#: default cap on :func:`hr_forward_fast`'s CPU tile-worker threads
MAX_TILE_WORKERS = 8


def hr_forward_fast(hr: "HRStream", x: torch.Tensor, params: torch.Tensor, scale: int = 1) -> torch.Tensor:
    """The inference path of :meth:`HRStream.forward <asapnet.models.asap.HRStream.forward>`: same values as
    :meth:`~asapnet.models.asap.HRStream.forward_reference` (up to fp32 rounding).

    The weights of every tile are transposed and scaled once per image (``(tiles, c_out,
    c_in)``, contiguous); then the tiles are processed in groups of ``g`` tiles of one tile
    row (bands of ``B`` pixel rows when one tile exceeds ``fast_pixels``), channels-major
    inside a tile (activations (g, C, B*S)), each layer one ``baddbmm`` with the bias fused,
    written into buffers allocated once per call, then an in-place leaky ReLU. Fresh large
    allocations page-fault on every call on CPU, which costs more than the arithmetic, and
    bounded buffers keep peak memory independent of the image size.

    On CPU the groups are shared among ``workers`` Python threads (default
    ``min(torch.get_num_threads(), MAX_TILE_WORKERS)``), each running its products with
    ``torch.get_num_threads() // workers`` intra-op threads (1 on a machine with at most 8
    threads): per-tile products (K = 64) are too small for PyTorch's intra-op threads to
    scale (a 1024x2048 HR stream took 1.2-2.9 s with 2 intra-op threads and 0.7-1.1 s with 2
    tile workers on the project's 2-core CPU, docs/benchmarks.md session 5). The products
    release the GIL; the cap keeps the Python part of the loop (a few µs per op) from
    serialising many workers. The torch thread count (process-wide for MKL) is restored
    after the call. Under a thread-local mode that workers would not inherit (a
    ``TorchDispatchMode`` such as ``FlopCounterMode``, CPU autocast) the loop runs in the
    calling thread; ``workers = 1`` forces that.
    """
    N, C, H, W = x.shape
    S = hr.S * scale
    gh, gw = H // S, W // S
    dt, dev = x.dtype, x.device
    cout = hr.dims[-1][1]
    out = torch.empty(N, cout, H, W, dtype=dt, device=dev)
    # A batched product covers g tiles x B rows of each tile (B = S unless one tile alone
    # exceeds fast_pixels: then tiles are cut into bands of B rows sharing their weights).
    B = S
    while B > 1 and B * S > hr.fast_pixels:
        B //= 2
    g = max(1, min(gw, hr.fast_pixels // (B * S)))  # tiles per batched product
    items = [(n, r, c0, min(c0 + g, gw)) for n in range(N) for r in range(gh) for c0 in range(0, gw, g)]
    layers = _tile_weights(hr, params)  # per image: [(W (tiles, co, ci), b (tiles, co, 1))]
    old = torch.get_num_threads()
    workers = hr.workers if hr.workers is not None else min(old, MAX_TILE_WORKERS)
    workers = max(1, min(workers, len(items))) if dev.type == "cpu" and not _thread_local_modes() else 1
    if workers == 1:
        _run_tiles(hr, x, layers, out, items, B, g, scale)
        return out
    per_worker = max(1, old // workers)
    inference = torch.is_inference_mode_enabled()

    def work(part):
        torch.set_num_threads(per_worker)  # per-thread OpenMP setting; MKL's is global (restored below)
        with torch.inference_mode(inference):
            _run_tiles(hr, x, layers, out, part, B, g, scale)

    try:
        with ThreadPoolExecutor(workers) as pool:
            for f in [pool.submit(work, items[k::workers]) for k in range(workers)]:
                f.result()
    finally:
        torch.set_num_threads(old)
    return out


def _tile_weights(hr: "HRStream", params: torch.Tensor) -> List[List[Tuple[torch.Tensor, torch.Tensor]]]:
    """(N, P, gh, gw) -> per image, per layer: (W (gh*gw, c_out, c_in) scaled, b (gh*gw, c_out, 1))."""
    N, P, gh, gw = params.shape
    slices = hr.param_slices()
    per_image = []
    for n in range(N):
        p = params[n].reshape(P, gh * gw)  # a view for the LR stream's (weight-major) output
        layers = []
        for ci, co, ws, bs in slices:
            w = torch.empty(gh * gw, co, ci, dtype=params.dtype, device=params.device)
            torch.mul(p[ws].view(ci, co, -1).permute(2, 1, 0), hr.weight_gain(ci), out=w)
            layers.append((w, p[bs].t().unsqueeze(2).contiguous()))
        per_image.append(layers)
    return per_image


def _run_tiles(hr: "HRStream", x: torch.Tensor, layers, out: torch.Tensor, items, B: int, g: int, scale: int = 1) -> None:
    """Evaluate the tile groups ``items`` [(n, tile row, first tile col, end col)] into ``out``."""
    C, W = x.shape[1], x.shape[-1]
    S, dt, dev = hr.S * scale, x.dtype, x.device
    cin, cout = hr.dims[0][0], hr.dims[-1][1]
    gw, T, nb = W // S, B * S, S // B
    feats = torch.empty(nb, g, cin, B, S, dtype=dt, device=dev)  # one input buffer per band
    if hr.num_frequencies:  # the encoding is the same for every tile: written once
        pe = positional_encoding(S, S, hr.num_frequencies, dev, dt, scale)[0]
        for j in range(nb):
            feats[j, :, C:] = pe[:, j * B:(j + 1) * B]
    acts = {co: [torch.empty(g, co, T, dtype=dt, device=dev) for _ in range(2)] for _, co in hr.dims}
    last = len(hr.dims) - 1
    for n, r, c0, c1 in items:
        k, t0 = c1 - c0, r * gw + c0
        wb = [(w[t0:t0 + k], b[t0:t0 + k]) for w, b in layers[n]]
        for j in range(nb):
            y0 = r * S + j * B
            # (C, B, k, S) strip -> (k, C, B, S) tile bands
            feats[j, :k, :C] = x[n, :, y0:y0 + B, c0 * S:c1 * S].reshape(C, B, k, S).permute(2, 0, 1, 3)
            h = feats[j, :k].view(k, cin, T)
            for i, (w, b) in enumerate(wb):
                h = torch.baddbmm(b, w, h, out=acts[w.shape[1]][i % 2][:k])  # (k, co, T)
                if i < last:
                    F.leaky_relu_(h, hr.slope)
            # (k, co, B, S) bands -> (co, B, k, S) block of the output
            out[n, :, y0:y0 + B, c0 * S:c1 * S].copy_(h.view(k, cout, B, S).permute(1, 2, 0, 3).reshape(cout, B, k * S))


def _thread_local_modes() -> bool:
    """True when a thread-local mode that worker threads would not inherit is active: a
    ``TorchDispatchMode`` (e.g. ``FlopCounterMode``) or CPU autocast."""
    try:
        dispatch = torch._C._len_torch_dispatch_stack() > 0
    except AttributeError:  # private API; assume a mode may be active
        dispatch = True
    try:
        autocast = torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        autocast = torch.is_autocast_cpu_enabled()
    return dispatch or autocast
