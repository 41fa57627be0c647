"""Cutting detection windows out of an image, with context, at the network's resolution.

A cascade window is a ``24 x 24`` square at some pyramid scale. A verifier sees the
same square plus a margin of context, resampled so that the window is again 24 pixels
wide: for a cascade candidate the crop is literally a slice of the pyramid level the
cascade scanned, margin included.

The work is batched by box size: all boxes of one size (one pyramid level, for cascade
candidates) share a single resize of the image, and their crops are then gathered with
one NumPy fancy index over a sliding-window view. There is no per-crop Python loop or
OpenCV call, which matters when a lenient cascade proposes thousands of windows.
"""

from __future__ import annotations

import cv2
import numpy as np

from vj.detector import to_gray

__all__ = ["CROP_MARGIN", "CROP_SIZE", "crop_regions", "extract_crops"]

#: Side of a crop in pixels.
CROP_SIZE = 28
#: Context on each side of the window, in crop pixels (the window itself is 24 pixels).
#: Small because the Caltech face crops, the main source of positives, show only
#: about 1.2 box widths around a cascade's box.
CROP_MARGIN = 2



def _check_boxes(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4) as x, y, w, h; got {boxes.shape}")
    if boxes.size and not np.issubdtype(boxes.dtype, np.integer):
        if not np.all(np.isfinite(boxes)) or np.any(boxes != np.round(boxes)):
            raise ValueError("boxes must hold integer pixel coordinates")
    boxes = boxes.astype(np.int64)
    if np.any(boxes[:, 2:] < 1):
        raise ValueError("every box needs a width and height of at least 1 pixel")
    return boxes


def crop_regions(boxes: np.ndarray, size: int = CROP_SIZE, margin: int = CROP_MARGIN) -> np.ndarray:
    """The image region each crop covers: the box grown by the margin, ``(N, 4)`` float.

    Parameters
    ----------
    boxes : (N, 4) int ndarray
        ``x, y, w, h``.
    size, margin : int
        Crop side and context margin, as for :func:`extract_crops`.

    Returns
    -------
    (N, 4) float64 ndarray of ``x, y, w, h``
    """
    size, margin = _check_geometry(size, margin)
    boxes = _check_boxes(boxes).astype(np.float64)
    inner = size - 2 * margin
    grow = boxes[:, 2:] * (margin / inner)
    return np.concatenate([boxes[:, :2] - grow, boxes[:, 2:] + 2 * grow], axis=1)


def _check_geometry(size: int, margin: int) -> tuple[int, int]:
    if int(size) != size or int(margin) != margin or margin < 0 or size - 2 * margin < 4:
        raise ValueError(
            f"need integer size and margin >= 0 leaving a window of >= 4 pixels, "
            f"got size={size!r}, margin={margin!r}"
        )
    return int(size), int(margin)


def _resized(octaves: list[np.ndarray], scale: float, width: int, height: int) -> np.ndarray:
    """The image reduced ``scale`` times to ``width x height``, without aliasing, quickly.

    Bilinear resampling reads 2x2 neighbours, so past a 2x reduction it skips pixels
    and aliases; area averaging does not, but is slow at fractional ratios. Halving is
    fast with either, so the image is halved (the halvings are cached in ``octaves``)
    until less than a 2x reduction remains, which bilinear resampling then does.
    """
    while scale >= 2.0 * 2 ** (len(octaves) - 1) and min(octaves[-1].shape) >= 2:
        last = octaves[-1]
        octaves.append(cv2.resize(last, (last.shape[1] // 2, last.shape[0] // 2),
                                  interpolation=cv2.INTER_AREA))
    k = 0
    while k + 1 < len(octaves) and scale >= 2.0 * 2**k:
        k += 1
    source = octaves[k]
    if source.shape == (height, width):
        return source
    return cv2.resize(source, (width, height), interpolation=cv2.INTER_LINEAR)


def extract_crops(
    image: np.ndarray,
    boxes: np.ndarray,
    size: int = CROP_SIZE,
    margin: int = CROP_MARGIN,
) -> np.ndarray:
    """Crops of ``boxes`` with context, each resampled to ``size x size``.

    Each box is mapped onto the central ``size - 2 * margin`` pixels of its crop; the
    ``margin`` pixels around it show the box's surroundings at the same scale. Parts of
    a crop that fall outside the image repeat the border pixels.

    Parameters
    ----------
    image : (H, W) or (H, W, 3|4) uint8 ndarray
        Grayscale, BGR or BGRA.
    boxes : (N, 4) int ndarray
        ``x, y, w, h`` in image pixels; each must overlap the image.
    size : int, optional
        Crop side.
    margin : int, optional
        Context on each side, in crop pixels.

    Returns
    -------
    (N, size, size) uint8 ndarray

    Notes
    -----
    Boxes of equal size share one resize of the image, to the scale that maps the box
    onto the crop's window (halvings, then bilinear for the rest), so the cost is one
    resize per distinct box size plus one gather. A cascade's
    candidates come in one size per pyramid level, and for them the window of the crop
    is the cascade's own window on its level.
    """
    gray = to_gray(image)
    size, margin = _check_geometry(size, margin)
    boxes = _check_boxes(boxes)
    n = boxes.shape[0]
    out = np.empty((n, size, size), np.uint8)
    if n == 0:
        return out
    h_img, w_img = gray.shape
    outside = ((boxes[:, 0] >= w_img) | (boxes[:, 1] >= h_img)
               | (boxes[:, 0] + boxes[:, 2] <= 0) | (boxes[:, 1] + boxes[:, 3] <= 0))
    if np.any(outside):
        raise ValueError(
            f"{int(outside.sum())} box(es) lie entirely outside the {w_img}x{h_img} image, "
            f"e.g. {boxes[np.argmax(outside)].tolist()}"
        )
    inner = size - 2 * margin
    octaves = [gray]
    # One group per box size; a 1-D key is several times faster to sort than rows.
    key = boxes[:, 2] * (1 << 32) + boxes[:, 3]
    keys, group = np.unique(key, return_inverse=True)
    order = np.argsort(group, kind="stable")
    starts = np.searchsorted(group[order], np.arange(len(keys) + 1))
    for g, k in enumerate(keys.tolist()):
        idx = order[starts[g]:starts[g + 1]]
        bw, bh = k >> 32, k & 0xFFFFFFFF
        sx, sy = bw / inner, bh / inner
        lw, lh = max(1, round(w_img / sx)), max(1, round(h_img / sy))
        level = _resized(octaves, min(sx, sy), lw, lh)
        # Top-left corner of each crop on the resized image.
        cx = np.rint(boxes[idx, 0] / sx).astype(np.int64) - margin
        cy = np.rint(boxes[idx, 1] / sy).astype(np.int64) - margin
        left, top = max(0, -int(cx.min())), max(0, -int(cy.min()))
        right = max(0, int(cx.max()) + size - lw)
        bottom = max(0, int(cy.max()) + size - lh)
        if left or top or right or bottom:
            level = cv2.copyMakeBorder(level, top, bottom, left, right, cv2.BORDER_REPLICATE)
        # Every size x size window of the level as a view (no copy); one gather takes
        # all of this group's crops.
        rows, cols = level.strides
        windows = np.lib.stride_tricks.as_strided(
            level, (level.shape[0] - size + 1, level.shape[1] - size + 1, size, size),
            (rows, cols, rows, cols), writeable=False)
        out[idx] = windows[cy + top, cx + left]
    return out
