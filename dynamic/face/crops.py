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

__all__ = ["CROP_MARGIN", "CROP_SIZE", "CROPS_VERSION", "crop_regions", "extract_crops"]

#: Raised whenever :func:`extract_crops` starts giving other pixels, so that crop sets
#: cached on disk (``vj-train-verifier``'s work folder) are not reused across the change.
#: 2: sampled by remapping, not by resizing the whole image per window size.
CROPS_VERSION = 2
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
    scales, which = np.unique(np.minimum(sx, sy), return_inverse=True)
    level_of = _octave_of(scales)[which.ravel()]
    grid = np.arange(size, dtype=np.float64) + 0.5
    deepest = int(level_of.max())
    # Halvings are made only over the part of the image that the crops needing them
    # sample, when that gives the very same pixels: the image and the part both split
    # into whole blocks of the deepest halving, so every halving is an exact 2x2 mean.
    # (A side not divisible so makes cv2.resize average over slightly shifted areas.)
    x0, y0, halved = 0, 0, gray
    align = 1 << deepest
    if deepest and w_img % align == 0 and h_img % align == 0:
        x0, y0, x1, y1 = _sampled_region(cx, cy, lw, lh, level_of, size, w_img, h_img)
        x0, y0 = x0 - x0 % align, y0 - y0 % align
        x1 = min(w_img, x0 + -(-(x1 - x0) // align) * align)
        y1 = min(h_img, y0 + -(-(y1 - y0) // align) * align)
        halved = gray[y0:y1, x0:x1]
    octaves = [gray]
    for k in range(1, deepest + 1):
        last = halved if k == 1 else octaves[-1]
        octaves.append(cv2.resize(last, (last.shape[1] // 2, last.shape[0] // 2),
                                  interpolation=cv2.INTER_AREA))
    # remap takes images below 32767 rows: crops go in chunks of stacked rows.
    chunk = max(1, 32000 // size)
    for k in np.unique(level_of).tolist():
        members = np.flatnonzero(level_of == k)
        origin = (x0 >> k, y0 >> k) if k else (0, 0)
        full = (w_img >> k, h_img >> k)
        for start in range(0, members.size, chunk):
            _remap_crops(octaves[k], origin, full, members[start:start + chunk], cx, cy, lw,
                         lh, grid, size, out)
    return out


def _octave_of(scales: np.ndarray) -> np.ndarray:
    """Halvings to sample each reduction ``scale`` from: while at least 2x remains.

    Bilinear sampling reads 2x2 neighbours, so past a 2x reduction it skips pixels
    and aliases; area-averaged halvings first leave less than 2x to it.
    """
    k = np.zeros(len(scales), np.int64)
    while True:
        more = scales >= 2.0 * 2.0**k
        if not more.any():
            return k
        k += more


def _sampled_region(cx, cy, lw, lh, level_of, size, w_img, h_img):
    """Image pixels read by the crops that sample a halving: ``x0, y0, x1, y1``."""
    deep = level_of > 0
    # Where those crops' first and last pixels sample the image, widened by two pixels
    # of the deepest halving: the bilinear neighbour and the halvings' rounding.
    pad = 2 * (1 << int(level_of.max()))
    ex, ey = w_img / lw[deep], h_img / lh[deep]
    left = np.floor((cx[deep] + 0.5) * ex - 0.5).min() - pad
    top = np.floor((cy[deep] + 0.5) * ey - 0.5).min() - pad
    right = np.ceil((cx[deep] + size - 0.5) * ex - 0.5).max() + pad
    bottom = np.ceil((cy[deep] + size - 0.5) * ey - 0.5).max() + pad
    x0, y0 = max(0, int(left)), max(0, int(top))
    return (x0, y0, min(w_img, max(x0 + 1, int(right) + 1)),
            min(h_img, max(y0 + 1, int(bottom) + 1)))


def _remap_crops(source: np.ndarray, origin: tuple[int, int], full: tuple[int, int],
                 idx: np.ndarray, cx: np.ndarray, cy: np.ndarray, lw: np.ndarray,
                 lh: np.ndarray, grid: np.ndarray, size: int, out: np.ndarray) -> None:
    """Sample the crops ``idx`` into ``out`` from ``source``.

    ``source`` is the part of one halving of the image that starts at ``origin`` (in
    that halving's pixels); ``full`` is the whole halving's width and height.
    """
    # Where each crop pixel lands on the halving, as cv2.resize maps a pixel of the
    # level: centres aligned, ``halving / level`` halving pixels per level pixel.
    ex = full[0] / lw[idx]
    ey = full[1] / lh[idx]
    map_x = (cx[idx, None] + grid) * ex[:, None] - 0.5 - origin[0]
    map_y = (cy[idx, None] + grid) * ey[:, None] - 0.5 - origin[1]
    map_x = np.broadcast_to(map_x[:, None, :], (idx.size, size, size))
    map_y = np.broadcast_to(map_y[:, :, None], (idx.size, size, size))
    # One bilinear remap for all these crops, stacked as rows; each crop depends only on
    # its own box, so a batch equals its crops one at a time.
    out[idx] = cv2.remap(
        source, map_x.reshape(-1, size).astype(np.float32),
        map_y.reshape(-1, size).astype(np.float32), cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE).reshape(idx.size, size, size)
