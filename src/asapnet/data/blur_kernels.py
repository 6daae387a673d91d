"""Random motion-blur kernels as in DeblurGAN (CVPR 2018 §3.2): a random camera trajectory
(:func:`motion_trajectory`) rasterised into a kernel (:func:`trajectory_kernel`), drawn per image by
:func:`random_kernel` from a :class:`BlurConfig`."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import numpy as np

#: DeblurGAN's ``expl`` values (probability scale of impulsive shakes / perturbation strength).
DEBLURGAN_EXPL: Tuple[float, ...] = (0.01, 0.009, 0.008, 0.007, 0.005, 0.003, 0.002, 0.001)


#: DeblurGAN's exposure fractions: the PSF integrates the first fraction of the trajectory.
DEBLURGAN_FRACTIONS: Tuple[float, ...] = (1 / 1000, 1 / 10, 1 / 2, 1.0)


@dataclass
class BlurConfig:
    """Random camera-shake blur (DeblurGAN defaults).

    Attributes:
        canvas: side of the square domain of the trajectory and of the uncropped kernel (pixels).
        iters: number of trajectory samples.
        max_len: trajectory length in pixels (the sum of the step lengths).
        expl: candidate perturbation strengths, one drawn per kernel.
        fractions: candidate exposure fractions in (0, 1], one drawn per kernel.
        noise_sigma: std of additive Gaussian noise after blurring, on the 0-255 scale (0 = none,
            as DeblurGAN).
    """

    canvas: int = 64
    iters: int = 2000
    max_len: float = 60.0
    expl: Tuple[float, ...] = DEBLURGAN_EXPL
    fractions: Tuple[float, ...] = DEBLURGAN_FRACTIONS
    noise_sigma: float = 0.0

    def __post_init__(self) -> None:
        if self.canvas < 3 or self.iters < 2 or self.max_len <= 0:
            raise ValueError(f"BlurConfig needs canvas >= 3, iters >= 2, max_len > 0, got {self}")
        if not self.fractions or any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError(f"BlurConfig.fractions must lie in (0, 1], got {self.fractions}")
        if not self.expl or any(e < 0 for e in self.expl):
            raise ValueError(f"BlurConfig.expl must be >= 0, got {self.expl}")


def motion_trajectory(rng: np.random.Generator, canvas: int = 64, iters: int = 2000, max_len: float = 60.0,
                      expl: float = 0.005) -> np.ndarray:
    """Random camera-shake trajectory (Boracchi & Foi 2012; DeblurGAN ``Trajectory.fit``).

    Returns:
        complex128 (iters,) positions in pixels (x = real, y = imag), centred in the canvas.
    """
    centripetal = 0.7 * rng.uniform()
    prob_big_shake = 0.2 * rng.uniform()
    gaussian_shake = 10 * rng.uniform()
    angle = 2 * math.pi * rng.uniform()
    step = max_len / (iters - 1)
    v = complex(math.cos(angle), math.sin(angle)) * (expl if expl > 0 else step)
    u_big = rng.uniform(size=iters - 1)
    u_dir = rng.uniform(size=iters - 1)
    gauss = rng.standard_normal((iters - 1, 2))
    x = np.zeros(iters, dtype=np.complex128)
    for t in range(iters - 1):
        nxt = 0j
        if u_big[t] < prob_big_shake * expl:  # abrupt shake: reverse the velocity (roughly)
            nxt = 2 * v * complex(math.cos(math.pi + u_dir[t] - 0.5), math.sin(math.pi + u_dir[t] - 0.5))
        dv = nxt + expl * (gaussian_shake * complex(gauss[t, 0], gauss[t, 1]) - centripetal * x[t]) * step
        v += dv
        v = v / abs(v) * step
        x[t + 1] = x[t] + v
    x -= complex(x.real.min(), x.imag.min())
    x += complex(math.ceil((canvas - x.real.max()) / 2), math.ceil((canvas - x.imag.max()) / 2))
    return x


def trajectory_kernel(traj: np.ndarray, canvas: int = 64, fraction: float = 1.0) -> np.ndarray:
    """Blur kernel of the first ``fraction`` of ``traj``: bilinear splatting, cropped to its
    support, centred on its centre of mass (odd side), normalised to sum 1.

    Returns:
        float32 (k, k), k odd, values >= 0 summing to 1.
    """
    n = max(2, int(math.ceil(fraction * len(traj))))
    pts = traj[:n]
    x, y = np.clip(pts.real, 0, canvas - 1.001), np.clip(pts.imag, 0, canvas - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    k = np.zeros((canvas, canvas), np.float64)
    for dy, dx, w in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        np.add.at(k, (y0 + dy, x0 + dx), w)
    k /= k.sum()
    ys, xs = np.nonzero(k > 0)
    cy = int(round(float((k.sum(1) * np.arange(canvas)).sum())))
    cx = int(round(float((k.sum(0) * np.arange(canvas)).sum())))
    r = max(cy - ys.min(), ys.max() - cy, cx - xs.min(), xs.max() - cx)
    big = np.pad(k, r)  # so the centred window never leaves the array
    out = big[cy: cy + 2 * r + 1, cx: cx + 2 * r + 1]
    return (out / out.sum()).astype(np.float32)


def random_kernel(rng: np.random.Generator, cfg: BlurConfig = BlurConfig()) -> np.ndarray:
    """One DeblurGAN-style kernel: draw ``expl`` and the exposure fraction, then the trajectory.

    Returns:
        float32 (k, k), k odd, summing to 1.
    """
    expl = float(cfg.expl[rng.integers(len(cfg.expl))])
    fraction = float(cfg.fractions[rng.integers(len(cfg.fractions))])
    traj = motion_trajectory(rng, cfg.canvas, cfg.iters, cfg.max_len, expl)
    return trajectory_kernel(traj, cfg.canvas, fraction)
