"""Cutting detection windows out of an image, with context, at the network's resolution.

A cascade window is a ``24 x 24`` square at some pyramid scale. A verifier sees the
same square plus a margin of context, resampled so that the window is again 24 pixels
wide: for a cascade candidate the crop is literally a slice of the pyramid level the
cascade scanned, margin included.

Each crop pixel is sampled bilinearly from the image (or from its area-averaged
halvings, past a 2x reduction) exactly where ``cv2.resize`` of the whole image to the
crop's scale would sample it, but only the crop's pixels are computed: one
``cv2.remap`` per halving for all the crops, with no per-crop Python loop and no
resize of whole images. A webcam frame's few dozen crops take about a tenth of a
millisecond; a lenient cascade's thousands of windows stay cheap too.
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


def _octaves(gray: np.ndarray, scale: float, octaves: list[np.ndarray]) -> int:
    """Index of the halving of ``gray`` to sample a ``scale``-times reduction from.

    Bilinear sampling reads 2x2 neighbours, so past a 2x reduction it skips pixels and
    aliases. The image is therefore halved by area averaging (halvings cached in
    ``octaves``) until less than a 2x reduction remains, which bilinear sampling does.
    """
    while scale >= 2.0 * 2 ** (len(octaves) - 1) and min(octaves[-1].shape) >= 2:
        last = octaves[-1]
        octaves.append(cv2.resize(last, (last.shape[1] // 2, last.shape[0] // 2),
                                  interpolation=cv2.INTER_AREA))
    k = 0
    while k + 1 < len(octaves) and scale >= 2.0 * 2**k:
        k += 1
    return k


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
    A crop equals the ``size x size`` window of the image resized (halvings by area,
    then bilinear) so that the box becomes ``size - 2 * margin`` pixels wide, to
    within OpenCV's 1/32-pixel sampling grid: a gray level or two. Each crop depends
    only on its own box.
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
    sx = boxes[:, 2] / inner
    sy = boxes[:, 3] / inner
    # The crop is a window of the image resized so that the box is ``inner`` pixels: its
    # level, ``round(W / sx) x round(H / sy)``, of which the crop's top-left pixel is the
    # box's corner on that level less the margin.
    lw = np.maximum(1, np.rint(w_img / sx))
    lh = np.maximum(1, np.rint(h_img / sy))
    cx = np.rint(boxes[:, 0] / sx) - margin
    cy = np.rint(boxes[:, 1] / sy) - margin
    octaves = [gray]
    scales, which = np.unique(np.minimum(sx, sy), return_inverse=True)
    level_of = np.array([_octaves(gray, s, octaves) for s in scales.tolist()])[which.ravel()]
    grid = np.arange(size, dtype=np.float64) + 0.5
    # remap takes images below 32767 rows: crops go in chunks of stacked rows.
    chunk = max(1, 32000 // size)
    for k in np.unique(level_of).tolist():
        for idx in np.array_split(np.flatnonzero(level_of == k),
                                  max(1, -(-int((level_of == k).sum()) // chunk))):
            _remap_crops(octaves[k], idx, cx, cy, lw, lh, grid, size, out)
    return out


def _remap_crops(source: np.ndarray, idx: np.ndarray, cx: np.ndarray, cy: np.ndarray,
                 lw: np.ndarray, lh: np.ndarray, grid: np.ndarray, size: int,
                 out: np.ndarray) -> None:
    """Sample the crops ``idx`` from ``source`` (one halving of the image) into ``out``."""
    # Where each crop pixel lands on the halved image, as cv2.resize maps a pixel of the
    # level: centres aligned, ``source / level`` source pixels per level pixel.
    ex = source.shape[1] / lw[idx]
    ey = source.shape[0] / lh[idx]
    map_x = (cx[idx, None] + grid) * ex[:, None] - 0.5
    map_y = (cy[idx, None] + grid) * ey[:, None] - 0.5
    map_x = np.broadcast_to(map_x[:, None, :], (idx.size, size, size))
    map_y = np.broadcast_to(map_y[:, :, None], (idx.size, size, size))
    # One bilinear remap for all these crops, stacked as rows; each crop depends only on
    # its own box, so a batch equals its crops one at a time.
    out[idx] = cv2.remap(
        source, map_x.reshape(-1, size).astype(np.float32),
        map_y.reshape(-1, size).astype(np.float32), cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE).reshape(idx.size, size, size)
