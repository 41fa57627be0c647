"""Positive training windows: face crops aligned to the detector's window.

The detector's box is a convention: OpenCV's frontal-face cascades put a square
from about the eyebrows (a little above) to just below the mouth. Crops from a
face set are loose or tight in their own way, so each source gets a *box*: the
part of every crop (as fractions of its width and height) that becomes the
window. The window is resampled from that box with OpenCV's bilinear
interpolation, the same filter the detector's pyramid uses.

Then: windows the detector can never accept (too flat, see
:func:`vj.feature_eval.window_norm_factors`) are dropped; near-identical crops
(the same photograph twice) are reduced to one; crops of the same photograph
with different framing are *grouped* so a group never straddles the
train / calibration / validation split; and each split is doubled with mirror
images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from .augment import Photometric, augment_windows
from .feature_eval import window_norm_factors
from .image_sources import read_annotations, read_gray
from .wider_faces import WiderFace

__all__ = ["Jitter", "PositiveSplit", "crop_box", "crop_views", "load_positives",
           "merge_groups", "near_duplicate_groups", "read_face_crops", "split_groups",
           "wider_views"]


@dataclass(frozen=True)
class Jitter:
    """Random geometric perturbation of positives, in the detector's window units.

    The detector meets faces between its pyramid scales (a factor
    ``scale_factor`` apart) and its window positions (1-2 pixels apart), and
    slightly turned; positives jittered as much teach the cascade that range.

    Parameters
    ----------
    scale : float
        Box size multiplied by ``exp(u)``, ``u`` uniform in ``[-scale, scale]``.
    shift : float
        Box moved by up to this many window pixels along each axis.
    angle : float
        In-plane rotation up to this many degrees either way.
    """

    scale: float = 0.05
    shift: float = 1.0
    angle: float = 6.0


def crop_box(
    image: np.ndarray,
    box: tuple[float, float, float, float],
    window: tuple[int, int],
    angle: float = 0.0,
) -> np.ndarray:
    """Resample the box ``(x, y, w, h)`` (pixels, may be fractional) of ``image`` to ``window``.

    Bilinear, pixel centres aligned as ``cv2.resize`` aligns them; pixels outside
    the image repeat the border. ``angle`` (degrees) turns the box about its centre.
    """
    x, y, w, h = (float(v) for v in box)
    ww, wh = window
    sx, sy = w / ww, h / wh
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    cx, cy = x + w / 2, y + h / 2
    # Output pixel centre (u + 0.5, v + 0.5), taken relative to the window centre,
    # is scaled, turned and moved to the box centre; input pixel centres sit at +0.5.
    du, dv = 0.5 - ww / 2, 0.5 - wh / 2
    m = np.array([[c * sx, -s * sy, cx - 0.5 + c * sx * du - s * sy * dv],
                  [s * sx, c * sy, cy - 0.5 + s * sx * du + c * sy * dv]])
    return cv2.warpAffine(image, m, (ww, wh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def read_face_crops(
    sources: list[str | os.PathLike],
    window: tuple[int, int],
    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
    *,
    jitter: Jitter | None = None,
    copies: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """Windows from face crops (folders) or annotated images (``path n x y w h`` lists).

    Parameters
    ----------
    sources : list of path
    window : (int, int)
        ``(width, height)`` of the detector window.
    box : (float, float, float, float)
        Part of each crop / annotated box that becomes the window, as fractions
        ``(x, y, w, h)`` of its size.
    jitter : Jitter, optional
    copies : int
        Jittered copies per crop (besides the crop itself).
    seed : int
        Seeds the jitter, crop by crop.

    Returns
    -------
    (N, h, w) uint8 ndarray, or (N, 1 + copies, h, w) when ``copies > 0``
    """
    bx, by, bw, bh = (float(v) for v in box)
    if bw <= 0 or bh <= 0:
        raise ValueError(f"box width and height must be positive, got {box}")
    if copies < 0 or (copies and jitter is None):
        raise ValueError(f"copies must be >= 0 and need a jitter, got {copies}, {jitter}")
    out = []
    for s in sources:
        for path, boxes in read_annotations(s):
            img = read_gray(path)
            if boxes is None:
                boxes = np.array([[0, 0, img.shape[1], img.shape[0]]])
            for x, y, w, h in boxes.tolist():
                b = (x + bx * w, y + by * h, bw * w, bh * h)
                rng = np.random.default_rng([seed, 0x717, len(out)])
                views = crop_views(img, b, window, jitter, copies, rng)
                out.append(views if copies else views[0])
    if not out:
        raise ValueError(f"no positive images found in {', '.join(map(str, sources))}")
    return np.stack(out)


def crop_views(
    image: np.ndarray,
    box: tuple[float, float, float, float],
    window: tuple[int, int],
    jitter: Jitter | None,
    copies: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The window of ``box`` and ``copies`` jittered ones: ``(1 + copies, h, w)`` uint8."""
    views = [crop_box(image, box, window)]
    if copies and jitter is None:
        raise ValueError("jittered copies need a jitter")
    for _ in range(copies):
        f = float(np.exp(rng.uniform(-jitter.scale, jitter.scale)))
        dx, dy = rng.uniform(-jitter.shift, jitter.shift, 2)
        a = float(rng.uniform(-jitter.angle, jitter.angle))
        cx = box[0] + box[2] / 2 + dx * box[2] / window[0]
        cy = box[1] + box[3] / 2 + dy * box[3] / window[1]
        views.append(crop_box(image, (cx - f * box[2] / 2, cy - f * box[3] / 2,
                                      f * box[2], f * box[3]), window, a))
    return np.stack(views)


def wider_views(
    faces: Sequence[WiderFace],
    window: tuple[int, int],
    *,
    jitter: Jitter | None = None,
    copies: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """Windows of WIDER-style crops, the detector's box cut from each crop's context.

    The box is each face's :attr:`~vj.wider_faces.WiderFace.window`: its aligned window
    where one was measured, else :func:`vj.wider_faces.detector_box` of its WIDER box.

    Returns
    -------
    (N, 1 + copies, h, w) uint8 ndarray
    """
    out = [crop_views(f.image, f.window, window, jitter, copies,
                      np.random.default_rng([seed, 0x771, i])) for i, f in enumerate(faces)]
    if not out:
        return np.zeros((0, 1 + copies, window[1], window[0]), np.uint8)
    return np.stack(out)


def _signatures(patches: np.ndarray) -> np.ndarray:
    """12x12 zero-mean, unit-norm thumbnails: robust to brightness, contrast and JPEG noise."""
    small = np.stack([cv2.resize(p, (12, 12), interpolation=cv2.INTER_AREA) for p in patches])
    v = small.reshape(len(patches), -1).astype(np.float64)
    v -= v.mean(axis=1, keepdims=True)
    return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-9)


def near_duplicate_groups(patches: np.ndarray, threshold: float) -> np.ndarray:
    """Label windows so that any two closer than ``threshold`` share a label.

    Distance is Euclidean between 12x12 normalised thumbnails (0: identical,
    ~0.55 typical between different faces, ``sqrt(2)`` uncorrelated). Groups
    are the connected components of the "closer than" graph.

    Returns
    -------
    (N,) int64 ndarray
        The smallest index of each window's group.
    """
    from sklearn.neighbors import NearestNeighbors

    sig = _signatures(patches)
    nbrs = NearestNeighbors(radius=threshold).fit(sig).radius_neighbors(sig, return_distance=False)
    parent = np.arange(len(patches))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, js in enumerate(nbrs):
        for j in js:
            a, b = find(i), find(int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
    return np.array([find(i) for i in range(len(patches))], np.int64)


def split_groups(
    groups: np.ndarray, fractions: tuple[float, ...], seed: int
) -> list[np.ndarray]:
    """Split sample indices into parts of about the given fractions, whole groups at a time.

    Groups are drawn in a seeded random order; parts ``1, 2, ...`` are filled in
    turn up to their share and part 0 takes the rest. Returns sorted index arrays.
    """
    uniq, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng([seed, 0x5EED]).permutation(uniq.size)
    targets = [f * len(groups) for f in fractions]
    assign = np.zeros(uniq.size, np.int64)
    part, filled = 1, 0
    for g in order:
        while part < len(targets) and targets[part] <= filled:
            part, filled = part + 1, 0
        if part >= len(targets):
            break
        assign[g] = part
        filled += counts[g]
    labels = assign[inverse]
    return [np.nonzero(labels == k)[0] for k in range(len(fractions))]


@dataclass
class PositiveSplit:
    """Aligned positive windows, split three ways (each doubled by mirroring if asked).

    Attributes
    ----------
    train : (N, h, w) uint8 ndarray
        Boosting fits these.
    calibration : (M, h, w) uint8 ndarray
        Held out from boosting; stage thresholds are set on them.
    validation : (K, h, w) uint8 ndarray
        Never used in training; for reporting.
    info : dict
        Counts of what was read, dropped and kept.
    source_index : dict of str to ndarray
        For each split, the index of each (unmirrored) window among the crops
        read, in order (to find the original crops again, e.g. for evaluation).
    """

    train: np.ndarray
    calibration: np.ndarray
    validation: np.ndarray
    info: dict = field(default_factory=dict)
    source_index: dict = field(default_factory=dict)


def merge_groups(*labelings: np.ndarray) -> np.ndarray:
    """Join groupings: samples sharing a label in any labeling end up in one group.

    Parameters
    ----------
    *labelings : (N,) int ndarray
        Group labels; ``-1`` means "in no group of this labeling".

    Returns
    -------
    (N,) int64 ndarray
        The smallest index of each sample's joined group.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(labelings[0])
    rows, cols = [np.arange(n)], [np.arange(n)]
    for labels in labelings:
        labels = np.asarray(labels, np.int64)
        if labels.shape != (n,):
            raise ValueError(f"every labeling needs {n} labels, got {labels.shape}")
        member = np.flatnonzero(labels >= 0)
        _, first = np.unique(labels[member], return_index=True)
        lookup = dict(zip(labels[member][first].tolist(), member[first].tolist(), strict=True))
        rows.append(member)
        cols.append(np.array([lookup[v] for v in labels[member].tolist()], np.int64))
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(r.size, np.int8), (r, c)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    first_of = np.full(comp.max() + 1 if n else 0, n, np.int64)
    np.minimum.at(first_of, comp, np.arange(n))
    return first_of[comp]


def _read_views(sources, wider, window, box, jitter, copies, seed):
    """All crops' views ``(N, 1 + copies, h, w)`` and photo labels (-1: none known)."""
    parts, photos = [], []
    if sources:
        v = read_face_crops(sources, window, box, jitter=jitter, copies=copies, seed=seed)
        parts.append(v.reshape(len(v), -1, window[1], window[0]))
        photos.append(np.full(len(v), -1, np.int64))
    if wider:
        parts.append(wider_views(wider, window, jitter=jitter, copies=copies, seed=seed))
        _, keys = np.unique([f.key for f in wider], return_inverse=True)
        photos.append(keys.reshape(-1).astype(np.int64))
    if not parts:
        raise ValueError("no positives: give crop sources, WIDER-style crops or both")
    return np.concatenate(parts), np.concatenate(photos)


def _augmented(views: np.ndarray, aug: Photometric, copies: int, seed: int) -> np.ndarray:
    """``copies`` degraded windows of every crop, cycling through its (jittered) views."""
    n_views = views.shape[1]
    picks = [views[:, k % n_views] for k in range(copies)]
    rng = np.random.default_rng([seed, 0xA06])
    return augment_windows(np.concatenate(picks), rng, aug)


def load_positives(
    sources: list[str | os.PathLike],
    window: tuple[int, int] = (24, 24),
    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
    *,
    wider: Sequence[WiderFace] = (),
    mirror: bool = True,
    validation_fraction: float = 0.1,
    calibration_fraction: float = 0.15,
    duplicate_distance: float = 0.1,
    group_distance: float = 0.3,
    jitter: Jitter | None = None,
    jitter_copies: int = 0,
    augment: Photometric | None = None,
    augment_copies: int = 0,
    seed: int = 0,
) -> PositiveSplit:
    """Read, align, clean and split positive windows.

    Parameters
    ----------
    sources : list of path
        Folders of crops or annotation lists (:func:`read_face_crops`); may be empty
        when ``wider`` is given.
    window, box
        See :func:`read_face_crops`.
    wider : sequence of WiderFace, optional
        Face crops in context (:func:`vj.wider_faces.read_wider_faces`), the detector's
        box cut from each (:func:`wider_views`). Crops of one photograph stay in
        one split.
    mirror : bool
        Add the left-right mirror image of every window (faces are symmetric).
    validation_fraction, calibration_fraction : float
        Shares of the (deduplicated) crops held out.
    duplicate_distance : float
        Crops closer than this are one photograph; only the first is kept.
    group_distance : float
        Crops closer than this stay in the same split.
    jitter : Jitter, optional
    jitter_copies : int
        Jittered copies of every crop added to its split (see :class:`Jitter`).
    augment : Photometric, optional
        Degradations of the augmented copies (default :class:`vj.augment.Photometric`).
    augment_copies : int
        Photometrically degraded copies of every *training* crop (calibration and
        validation keep the real faces only, so stage thresholds and reports are set
        on real faces).
    seed : int

    Returns
    -------
    PositiveSplit
    """
    if not (0 <= validation_fraction < 1 and 0 < calibration_fraction < 1
            and validation_fraction + calibration_fraction < 1):
        raise ValueError("validation_fraction and calibration_fraction must be in [0, 1) with "
                         f"a sum below 1, got {validation_fraction}, {calibration_fraction}")
    if augment_copies < 0:
        raise ValueError(f"augment_copies must be >= 0, got {augment_copies}")
    views, photos = _read_views(sources, wider, window, box, jitter, jitter_copies, seed)
    n_read = len(views)
    valid = window_norm_factors(views[:, 0])[1]
    index = np.nonzero(valid)[0]
    crops = views[valid, 0]
    dup = near_duplicate_groups(crops, duplicate_distance)
    first = dup == np.arange(len(crops))
    crops, index = crops[first], index[first]
    groups = merge_groups(near_duplicate_groups(crops, group_distance), photos[index])
    fractions = (1 - validation_fraction - calibration_fraction, calibration_fraction,
                 validation_fraction)
    parts = split_groups(groups, fractions, seed)
    sets = [views[index[p]].reshape(-1, window[1], window[0]) for p in parts]
    if augment_copies:
        sets[0] = np.concatenate([sets[0], _augmented(views[index[parts[0]]],
                                                      augment or Photometric(),
                                                      augment_copies, seed)])
    # A jittered or degraded copy can come out flat even if its crop is not; the
    # detector skips those.
    sets = [v[window_norm_factors(v)[1]] for v in sets]
    if mirror:
        sets = [np.concatenate([s, s[:, :, ::-1]]) for s in sets]
    info = {
        "read": n_read,
        "read_wider": len(wider),
        "dropped_flat": int(n_read - valid.sum()),
        "dropped_duplicates": int(valid.sum() - len(crops)),
        "kept": len(crops),
        "groups": int(np.unique(groups).size),
        "mirrored": bool(mirror),
        "jitter_copies": int(jitter_copies),
        "augment_copies": int(augment_copies),
        "train": len(sets[0]),
        "calibration": len(sets[1]),
        "validation": len(sets[2]),
    }
    names = ("train", "calibration", "validation")
    return PositiveSplit(*(np.ascontiguousarray(s) for s in sets), info=info,
                         source_index={k: index[p] for k, p in zip(names, parts, strict=True)})
