"""The image pyramid of OpenCV 4's ``detectMultiScale``, reproduced exactly.

OpenCV scans a fixed-size window over a pyramid of downscaled images. Which
scales it uses, the size each level is resized to, the scan step per level, and
how the levels' integral tables are packed side by side into one buffer are all
reproduced here (``CascadeClassifierImpl::detectMultiScaleNoGrouping`` and
``FeatureEvaluator::updateScaleData``), including their float32 roundings, so
that a cascade scans exactly the windows OpenCV scans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PyramidLayout", "opencv_scales", "pyramid_layout"]

# Refuse pyramids whose integral tables would need more memory than this.
MAX_BUFFER_BYTES = 3 << 30


def _cv_round(v: float | np.floating) -> int:
    """``cvRound``: round half to even (the FPU's default mode)."""
    return int(np.rint(v))


def opencv_scales(
    image_size: tuple[int, int],
    window: tuple[int, int],
    scale_factor: float,
    min_size: tuple[int, int] = (0, 0),
    max_size: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """The float32 scale factors OpenCV's ``detectMultiScale`` scans.

    Parameters
    ----------
    image_size : (width, height)
    window : (width, height)
        The cascade's window.
    scale_factor : float
        Greater than 1.
    min_size, max_size : (width, height)
        Object size limits; ``(0, 0)`` means none (max: the image size).

    Returns
    -------
    (L,) float32 ndarray, increasing.
    """
    iw, ih = image_size
    ww, wh = window
    if ih < wh or iw < ww:
        return np.zeros(0, np.float32)
    max_w, max_h = max_size
    if max_w == 0 or max_h == 0:
        max_w, max_h = iw, ih
    all_scales = []
    factor = 1.0
    while True:
        if _cv_round(ww * factor) > iw or _cv_round(wh * factor) > ih:
            break
        all_scales.append(np.float32(factor))
        factor *= scale_factor
    scales = []
    for s in all_scales:
        w = _cv_round(np.float32(ww) * s)
        h = _cv_round(np.float32(wh) * s)
        if w > max_w or h > max_h:
            break
        if w < min_size[0] or h < min_size[1]:
            continue
        scales.append(s)
    if not scales and all_scales and tuple(min_size) == (max_w, max_h):
        # minSize == maxSize between two pyramid scales: OpenCV takes the closest.
        dist = [
            np.hypot(np.float32(min_size[0] - s * ww), np.float32(min_size[1] - s * wh))
            for s in all_scales
        ]
        scales.append(all_scales[int(np.argmin(dist))])
    return np.array(scales, np.float32)


@dataclass(frozen=True)
class PyramidLayout:
    """Where each pyramid level lives in one packed buffer (OpenCV's ``sbuf``).

    Attributes
    ----------
    scales : (L,) float32
    sizes : (L, 2) int64
        Resized image ``(width, height)`` of each level.
    offsets : (L,) int64
        Flat index of each level's integral table origin in one channel.
    ysteps : (L,) int64
        Window step (both directions) of each level, in level pixels: OpenCV's 2
        below scale 2 and 1 from scale 2 on, or ``min_step`` where that is larger.
    stride : int
        Row length of the packed buffer.
    rows : int
        Number of rows of one channel.
    """

    scales: np.ndarray
    sizes: np.ndarray
    offsets: np.ndarray
    ysteps: np.ndarray
    stride: int
    rows: int

    @property
    def channel_size(self) -> int:
        return self.stride * self.rows

    def __len__(self) -> int:
        return int(self.scales.size)


def pyramid_layout(image_size: tuple[int, int], scales: np.ndarray,
                   min_step: int = 1) -> PyramidLayout:
    """Pack the levels' ``(h + 1, w + 1)`` tables in shelves, as OpenCV does.

    Windows step as in OpenCV (see :class:`PyramidLayout`), but never by fewer than
    ``min_step`` level pixels.
    """
    iw, ih = image_size
    n = len(scales)
    sizes = np.zeros((n, 2), np.int64)
    offsets = np.zeros(n, np.int64)
    ysteps = np.zeros(n, np.int64)
    if n == 0:
        return PyramidLayout(np.zeros(0, np.float32), sizes, offsets, ysteps, 0, 0)
    w0 = _cv_round(np.float32(iw) / scales[0])
    stride = ((w0 + 31) + 31) // 32 * 32
    ofs_x = ofs_y = 0
    layer_dy = 0
    for i, sc in enumerate(scales):
        w = _cv_round(np.float32(iw) / sc)
        h = _cv_round(np.float32(ih) / sc)
        sizes[i] = (w, h)
        ysteps[i] = max(1 if sc >= 2 else 2, min_step)
        if i == 0:
            layer_dy = h + 1
        if ofs_x + w + 1 > stride:
            ofs_x, ofs_y = 0, ofs_y + layer_dy
            layer_dy = h + 1
        offsets[i] = ofs_y * stride + ofs_x
        ofs_x += w + 1
    rows = ofs_y + layer_dy
    return PyramidLayout(np.asarray(scales, np.float32), sizes, offsets, ysteps, stride, rows)
