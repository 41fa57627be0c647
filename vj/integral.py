"""Integral images: the summed-area tables every Haar feature is read from.

Three tables, all of shape ``(H + 1, W + 1)`` with a zero first row and column,
laid out exactly as OpenCV's ``cv::integral`` lays them out:

``sum[y, x]``
    sum of ``image[:y, :x]``.
``sqsum[y, x]``
    sum of ``image[:y, :x] ** 2`` (for variance normalisation).
``tilted[y, x]``
    Lienhart's 45-degree table: the sum of the pixels ``image[j, i]`` with
    ``j < y`` and ``|i - x + 1| <= y - 1 - j`` (a triangle pointing up whose apex
    sits just above ``(x - 1, y - 1)``).

All tables are ``int32`` and wrap modulo 2**32 on overflow, as OpenCV's do: the
sum over any rectangle of a real image is far below 2**31, and differences of
wrapped values are exact in modular arithmetic, so huge images stay correct.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = [
    "fill_packed_integrals",
    "integral_image",
    "integral_images",
    "rect_sum",
    "tilted_rect_sum",
]


@nb.njit(cache=True, nogil=True, parallel=True)
def fill_packed_integrals(rbuf, buf, stride, level_offset, level_w, level_h, sq_ofs, t_ofs):
    """Integral tables of several images packed in one strided buffer.

    Image ``l`` occupies ``level_h[l]`` rows of ``level_w[l]`` pixels of the flat
    uint8 buffer ``rbuf``, starting at ``level_offset[l]``, rows ``stride`` apart.
    Its ``(h + 1, w + 1)`` tables are written at the same offset of each channel
    of the flat int32 buffer ``buf``: sums from 0, squared sums from ``sq_ofs``
    and, when ``t_ofs >= 0``, tilted sums from ``t_ofs``. Images run in parallel.
    Values are accumulated in int64 and stored wrapped to int32.
    """
    for lv in nb.prange(level_offset.size):
        base = level_offset[lv]
        w = level_w[lv]
        h = level_h[lv]
        for x in range(w + 1):
            buf[base + x] = 0
            buf[sq_ofs + base + x] = 0
        for y in range(1, h + 1):
            row = base + y * stride
            src = base + (y - 1) * stride
            buf[row] = 0
            buf[sq_ofs + row] = 0
            s = np.int64(0)
            sq = np.int64(0)
            for x in range(1, w + 1):
                v = np.int64(rbuf[src + x - 1])
                s += v
                sq += v * v
                buf[row + x] = np.int32(np.int64(buf[row - stride + x]) + s)
                buf[sq_ofs + row + x] = np.int32(
                    (np.int64(buf[sq_ofs + row - stride + x]) + sq) & 0xFFFFFFFF
                )
        if t_ofs >= 0:
            _fill_tilted(rbuf, buf, stride, base, w, h, t_ofs)


@nb.njit(cache=True, nogil=True)
def _fill_tilted(rbuf, buf, stride, base, w, h, t_ofs):
    # The recurrence
    #   T(y, x) = T(y-1, x-1) + T(y-1, x+1) - T(y-2, x) + I(y-1, x-1) + I(y-2, x-1)
    # evaluated on rows padded by h + 1 columns each side, so that triangles
    # whose apex lies outside the image (and which still cover pixels inside)
    # are carried; the outermost padded columns are always zero.
    pad = h + 1
    wp = w + 2 * pad + 1
    r0 = np.zeros(wp, np.int64)
    r1 = np.zeros(wp, np.int64)
    r2 = np.zeros(wp, np.int64)
    for x in range(w + 1):
        buf[t_ofs + base + x] = 0
    for y in range(1, h + 1):
        for k in range(1, wp - 1):
            acc = r1[k - 1] + r1[k + 1] - r0[k]
            col = k - pad - 1
            if 0 <= col < w:
                acc += rbuf[base + (y - 1) * stride + col]
                if y >= 2:
                    acc += rbuf[base + (y - 2) * stride + col]
            r2[k] = acc
        row = t_ofs + base + y * stride
        for x in range(w + 1):
            buf[row + x] = np.int32(r2[x + pad] & 0xFFFFFFFF)
        r0, r1, r2 = r1, r2, r0


def _as_gray_u8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    return np.ascontiguousarray(image)


def integral_images(
    image: np.ndarray, *, tilted: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Sum, squared-sum and (optionally) tilted integral images of ``image``.

    Parameters
    ----------
    image : (H, W) uint8 ndarray
        Grayscale image.
    tilted : bool
        Also compute the 45-degree table (needed by tilted Haar features).

    Returns
    -------
    sum, sqsum : (H + 1, W + 1) int32 ndarray
        The squared sums wrap modulo 2**32 exactly as OpenCV's CV_32S tables.
    tilted : (H + 1, W + 1) int32 ndarray or None

    Examples
    --------
    >>> import numpy as np
    >>> s, sq, t = integral_images(np.full((2, 3), 2, np.uint8))
    >>> int(s[-1, -1]), int(sq[-1, -1])
    (12, 24)
    """
    image = _as_gray_u8(image)
    h, w = image.shape
    stride = w + 1
    area = (h + 1) * stride
    rbuf = np.zeros((h + 1, stride), np.uint8)
    rbuf[:h, :w] = image
    nch = 3 if tilted else 2
    buf = np.empty(nch * area, dtype=np.int32)
    one = np.zeros(1, np.int64)
    fill_packed_integrals(rbuf.ravel(), buf, stride, one, one + w, one + h, area,
                          2 * area if tilted else -1)
    tables = buf.reshape(nch, h + 1, w + 1)
    return tables[0], tables[1], (tables[2] if tilted else None)


def integral_image(image: np.ndarray) -> np.ndarray:
    """The ``(H + 1, W + 1)`` int32 summed-area table of a uint8 image."""
    return integral_images(image)[0]


def rect_sum(table: np.ndarray, x: int, y: int, w: int, h: int) -> int:
    """Sum of the upright rectangle ``(x, y, w, h)`` read from an integral table."""
    t = table.astype(np.int64)
    return int(t[y, x] - t[y, x + w] - t[y + h, x] + t[y + h, x + w])


def tilted_rect_sum(table: np.ndarray, x: int, y: int, w: int, h: int) -> int:
    """Sum of OpenCV's 45-degree rectangle ``(x, y, w, h)`` read from a tilted table.

    The rectangle's top corner is at ``(x, y)``; it extends ``w`` pixels down-right
    and ``h`` pixels down-left (OpenCV's ``CV_TILTED_OFS`` convention).
    """
    t = table.astype(np.int64)
    return int(t[y, x] - t[y + h, x - h] - t[y + w, x + w] + t[y + w + h, x + w - h])
