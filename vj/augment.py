"""Photometric augmentation of face windows: what real photographs do to faces.

Face crops from web collections are mostly well lit, sharp and large. Faces in real
photographs are often dim and low in contrast (under-exposed scans, dark skin in poor
light), lit from one side, blurred, small (a few dozen pixels, upsampled by the
detector's pyramid), noisy and JPEG-compressed. :class:`Photometric` draws such
degradations at random and :func:`augment_windows` applies them to a stack of windows,
in the order a camera would: light (exposure, gamma, uneven lighting), optics (blur,
low resolution), sensor noise, then compression.

A cascade normalises every window by its standard deviation, so a plain change of
brightness or contrast does not change its features; what does is the *non-linear*
part of real exposure (gamma, clipping, the 8-bit quantisation of a dim face and the
noise that then dominates it), which these degradations produce.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np

__all__ = ["Photometric", "augment_windows"]


@dataclass(frozen=True)
class Photometric:
    """Random degradations, each applied with its own probability.

    Parameters
    ----------
    p_exposure : float
        Probability of a new exposure: the window's contrast multiplied by a factor
        drawn log-uniformly from ``contrast`` and its mean moved to a level drawn
        from ``level`` (dim levels make 8-bit quantisation visible).
    contrast : (float, float)
    level : (float, float)
    p_gamma : float
        Probability of a gamma curve, exponent drawn log-uniformly from ``gamma``
        (above 1 darkens the mid-tones, as under-exposure does).
    gamma : (float, float)
    p_light : float
        Probability of uneven lighting: a linear ramp in a random direction that
        dims one side by up to ``light`` (a fraction).
    light : float
    p_blur : float
        Probability of a Gaussian blur, sigma in window pixels from ``blur``.
    blur : (float, float)
    p_lowres : float
        Probability of down- and up-sampling by a factor from ``lowres`` (a small
        face seen by the detector at a larger scale).
    lowres : (float, float)
    p_noise : float
        Probability of Gaussian noise, sigma in gray levels from ``noise``.
    noise : (float, float)
    p_jpeg : float
        Probability of JPEG compression at a quality from ``jpeg``.
    jpeg : (int, int)
    """

    p_exposure: float = 0.4
    contrast: tuple[float, float] = (0.25, 1.0)
    level: tuple[float, float] = (25.0, 200.0)
    p_gamma: float = 0.4
    gamma: tuple[float, float] = (0.6, 2.2)
    p_light: float = 0.3
    light: float = 0.6
    p_blur: float = 0.3
    blur: tuple[float, float] = (0.5, 1.5)
    p_lowres: float = 0.3
    lowres: tuple[float, float] = (0.4, 0.8)
    p_noise: float = 0.3
    noise: tuple[float, float] = (2.0, 8.0)
    p_jpeg: float = 0.3
    jpeg: tuple[int, int] = (25, 85)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name} must be a probability in [0, 1], got {value}")
            if isinstance(value, tuple) and (len(value) != 2 or value[0] > value[1]):
                raise ValueError(f"{f.name} must be a (low, high) range, got {value}")
        checks = [(self.contrast[0] > 0, "contrast factors must be > 0"),
                  (self.gamma[0] > 0, "gamma exponents must be > 0"),
                  (0 <= self.light < 1, "light must be in [0, 1)"),
                  (self.blur[0] > 0 and self.noise[0] >= 0, "blur > 0 and noise >= 0"),
                  (0 < self.lowres[0] and self.lowres[1] <= 1, "lowres factors in (0, 1]"),
                  (1 <= self.jpeg[0] and self.jpeg[1] <= 100, "jpeg qualities in [1, 100]"),
                  (0 <= self.level[0] and self.level[1] <= 255, "levels in [0, 255]")]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"{msg} (got {self})")


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def _light(x: np.ndarray, rng: np.random.Generator, aug: Photometric) -> None:
    """Exposure, gamma and lighting ramps, in place on float windows ``(N, h, w)``."""
    n, h, w = x.shape
    on = rng.random(n) < aug.p_exposure
    if on.any():
        k = int(on.sum())
        mean = x[on].mean(axis=(1, 2), keepdims=True)
        c = _log_uniform(rng, *aug.contrast, k)[:, None, None]
        level = rng.uniform(*aug.level, k)[:, None, None]
        x[on] = (x[on] - mean) * c + level
    on = rng.random(n) < aug.p_gamma
    if on.any():
        g = _log_uniform(rng, *aug.gamma, int(on.sum()))[:, None, None]
        x[on] = 255.0 * (np.clip(x[on], 0, 255) / 255.0) ** g
    on = rng.random(n) < aug.p_light
    if on.any():
        k = int(on.sum())
        angle = rng.uniform(0, 2 * np.pi, k)
        yy, xx = np.mgrid[0:h, 0:w]
        u = ((xx[None] - (w - 1) / 2) * np.cos(angle)[:, None, None]
             + (yy[None] - (h - 1) / 2) * np.sin(angle)[:, None, None])
        u = (u - u.min(axis=(1, 2), keepdims=True)) / max(np.hypot(w, h) - 1, 1)
        depth = rng.uniform(0, aug.light, k)[:, None, None]
        x[on] *= 1.0 - depth * u


def augment_windows(windows: np.ndarray, rng: np.random.Generator,
                    aug: Photometric | None = None) -> np.ndarray:
    """Degrade each window of ``(N, h, w)`` uint8 at random (see :class:`Photometric`).

    Parameters
    ----------
    windows : (N, h, w) uint8 ndarray
    rng : numpy.random.Generator
        Draws every choice: the same generator state gives the same output.
    aug : Photometric, optional
        The degradations and their probabilities (default: :class:`Photometric()`).

    Returns
    -------
    (N, h, w) uint8 ndarray
        A new array; ``windows`` is not changed.
    """
    windows = np.asarray(windows)
    if windows.ndim != 3 or windows.dtype != np.uint8:
        raise ValueError(f"windows must be an (N, h, w) uint8 array, got {windows.dtype} "
                         f"{windows.shape}")
    aug = aug or Photometric()
    n, h, w = windows.shape
    x = windows.astype(np.float32)
    _light(x, rng, aug)
    blur = np.where(rng.random(n) < aug.p_blur, rng.uniform(*aug.blur, n), 0.0)
    lowres = np.where(rng.random(n) < aug.p_lowres, rng.uniform(*aug.lowres, n), 1.0)
    noise = np.where(rng.random(n) < aug.p_noise, rng.uniform(*aug.noise, n), 0.0)
    quality = np.where(rng.random(n) < aug.p_jpeg,
                       rng.integers(aug.jpeg[0], aug.jpeg[1] + 1, n), 0)
    out = np.empty_like(windows)
    for i in range(n):
        v = x[i]
        if blur[i] > 0:
            v = cv2.GaussianBlur(v, (0, 0), float(blur[i]), borderType=cv2.BORDER_REPLICATE)
        if lowres[i] < 1:
            small = (max(2, round(w * lowres[i])), max(2, round(h * lowres[i])))
            v = cv2.resize(cv2.resize(v, small, interpolation=cv2.INTER_AREA), (w, h),
                           interpolation=cv2.INTER_LINEAR)
        if noise[i] > 0:
            v = v + rng.normal(0.0, noise[i], v.shape).astype(np.float32)
        u8 = np.clip(np.rint(v), 0, 255).astype(np.uint8)
        if quality[i]:
            ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(quality[i])])
            if ok:
                u8 = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
        out[i] = u8
    return out
