"""Training and validation data of the face verifiers, split by image.

The verifiers judge what a lenient cascade accepts, so their data is made of cascade
windows, cut with :func:`dynamic.crops.extract_crops` exactly as at detection time:

* positives: the Caltech face crops, with boxes jittered the way a cascade's raw
  windows scatter around a face (measured on ORL), and the cascade's own windows on
  the ORL faces;
* negatives: the cascade's own false positives on the face-free background photos,
  the cascade's windows on ORL images that miss the face, and the CBCL non-face patches.

Every source is split by *image* (ORL by person) into ``train``, ``tune`` (early
stopping, IDK thresholds) and ``eval`` (the reported measurements), so no photo, face
or person lends crops to two parts. :func:`make_scenes` builds detection scenes for
``eval``: faces pasted at many sizes into held-out background photos.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dynamic.crops import CROP_MARGIN, CROP_SIZE, extract_crops
from dynamic.datasets import default_data_dir

__all__ = [
    "CALTECH_FACE_BOX",
    "ORL_FACE_BOX",
    "SPLITS",
    "CropSet",
    "Scene",
    "SourceSplit",
    "box_iou",
    "assemble_crops",
    "caltech_positives",
    "cascade_samples",
    "cbcl_negatives",
    "detection_rate_at",
    "detection_rate_curve",
    "face_jitter",
    "false_positives_at",
    "make_scenes",
    "match_detections",
    "orl_face_box",
    "orl_scenes",
    "read_gray",
    "resolve_data_dir",
    "split_sources",
]

SPLITS = ("train", "tune", "eval")

#: Where a cascade's box falls on a 36 x 36 Caltech crop (median of OpenCV's default
#: frontal-face cascade over the set): ``x, y, w, h``.
CALTECH_FACE_BOX = (3.3, 1.7, 29.7, 29.7)
#: Median box of the same cascade on a 92 x 112 ORL image; used where it finds none.
ORL_FACE_BOX = (6.5, 23.0, 77.5, 77.5)

# Raw cascade windows around a face (ORL, IoU >= 0.4 with the grouped box): centre
# offsets have a standard deviation of ~0.055 box widths, log-scale ~0.12, mean -0.04.
_JITTER_SHIFT = 0.055
_JITTER_LOG_SCALE = 0.12
_JITTER_LOG_SCALE_MEAN = -0.02

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".pgm", ".bmp"}


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The shared data folder: ``data_dir``, else ``$VJ_DATA``, else ``../shared/data``.

    Raises
    ------
    ValueError
        When the folder does not exist.
    """
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if root is None or not root.is_dir():
        raise ValueError(
            f"shared face data folder not found ({root}); pass its path or set VJ_DATA"
        )
    return root


def read_gray(path: str | Path) -> np.ndarray:
    """An image file as a 2-D uint8 array (colour converted to gray)."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return image


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ValueError(f"missing data folder {folder}; see the data README for the layout")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)


def _part(key: str, seed: int, fractions: tuple[float, float]) -> str:
    """``train`` / ``tune`` / ``eval`` for a file or person, stable under additions."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "little") / 2.0**64
    if u < fractions[1]:
        return "eval"
    if u < fractions[0] + fractions[1]:
        return "tune"
    return "train"


def _unique_crops(files: list[Path], threshold: float = 0.97) -> list[Path]:
    """One file of every group of near-identical crops.

    The Caltech set holds hundreds of near-copies (the same photo re-encoded or shifted
    by a pixel); a copy on each side of the split would inflate the held-out scores.
    Two crops are copies when their 8 x 8 thumbnails correlate above ``threshold``
    (distinct faces stay below ~0.95), and copies of copies are copies.
    """
    thumbs = np.stack([
        cv2.resize(read_gray(p), (8, 8), interpolation=cv2.INTER_AREA).ravel() for p in files
    ]).astype(np.float64)
    thumbs -= thumbs.mean(axis=1, keepdims=True)
    thumbs /= np.maximum(np.linalg.norm(thumbs, axis=1, keepdims=True), 1e-9)
    parent = np.arange(len(files))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(files), 1024):
        corr = thumbs[start:start + 1024] @ thumbs.T
        for i, j in zip(*np.nonzero(corr > threshold), strict=True):
            a, b = root(start + int(i)), root(int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [path for i, path in enumerate(files) if root(i) == i]


@dataclass(frozen=True)
class SourceSplit:
    """The shared data's files, each assigned to one of :data:`SPLITS`.

    Attributes
    ----------
    caltech, orl, backgrounds, nonfaces : dict of str to list of Path
        Files per part: Caltech face crops (near-duplicates removed), ORL images
        (split by person), background photos (UMD and SUN) and CBCL non-face patches.
    """

    caltech: dict[str, list[Path]]
    orl: dict[str, list[Path]]
    backgrounds: dict[str, list[Path]]
    nonfaces: dict[str, list[Path]]

    def counts(self) -> dict[str, dict[str, int]]:
        """Number of files of each source in each part."""
        return {
            name: {part: len(getattr(self, name)[part]) for part in SPLITS}
            for name in ("caltech", "orl", "backgrounds", "nonfaces")
        }


def split_sources(
    data_dir: str | Path | None = None,
    *,
    fractions: tuple[float, float] = (0.15, 0.15),
    seed: int = 0,
) -> SourceSplit:
    """Assign every file of the shared data to ``train``, ``tune`` or ``eval``.

    Parameters
    ----------
    data_dir : path, optional
        The shared data folder (see :func:`resolve_data_dir`).
    fractions : (float, float), optional
        Shares of ``tune`` and ``eval``; the rest is ``train``.
    seed : int, optional
        Seed of the assignment (a hash of seed and file name, so adding files does not
        move the others).

    Returns
    -------
    SourceSplit
    """
    if len(fractions) != 2 or min(fractions) <= 0 or sum(fractions) >= 1:
        raise ValueError(f"fractions must be two shares in (0, 1) summing below 1, got {fractions}")
    root = resolve_data_dir(data_dir)

    def by_file(files: Iterable[Path]) -> dict[str, list[Path]]:
        parts: dict[str, list[Path]] = {p: [] for p in SPLITS}
        for path in files:
            parts[_part(path.name, seed, fractions)].append(path)
        return parts

    orl: dict[str, list[Path]] = {p: [] for p in SPLITS}
    person_dirs = sorted(d for d in (root / "orl").iterdir() if d.is_dir())
    if not person_dirs:
        raise ValueError(f"no ORL person folders in {root / 'orl'}")
    # 40 people only: an exact share per part, not a hash draw, keeps each part populated.
    rng = np.random.default_rng(seed)
    order = [person_dirs[i] for i in rng.permutation(len(person_dirs))]
    n_eval = max(1, round(fractions[1] * len(order)))
    n_tune = max(1, round(fractions[0] * len(order)))
    for i, person in enumerate(order):
        part = "eval" if i < n_eval else "tune" if i < n_eval + n_tune else "train"
        orl[part] += [p for p in _files(person) if p.suffix.lower() == ".pgm"]
    backgrounds = _files(root / "backgrounds" / "umd") + _files(root / "backgrounds" / "sun")
    return SourceSplit(
        caltech=by_file(_unique_crops(_files(root / "faces" / "caltech36"))),
        orl=orl,
        backgrounds=by_file(backgrounds),
        nonfaces=by_file(_files(root / "nonfaces" / "cbcl24")),
    )


def box_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of every box with every other, ``(N, M)``; boxes ``x, y, w, h``."""
    a = np.asarray(boxes, np.float64).reshape(-1, 4)[:, None]
    b = np.asarray(others, np.float64).reshape(-1, 4)[None]
    w = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    h = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return inter / np.maximum(union, 1e-12)


def face_jitter(
    box: Sequence[float], n: int, rng: np.random.Generator, *, limit: float = 2.0
) -> np.ndarray:
    """``n`` square boxes scattered around ``box`` like a cascade's raw windows on a face.

    Centre offsets and log-scale are normal (spreads measured on ORL), truncated at
    ``limit`` standard deviations. Returns ``(n, 4)`` float64 ``x, y, w, h``.
    """
    x, y, w, h = (float(v) for v in box)
    side = np.sqrt(w * h)
    z = np.clip(rng.standard_normal((n, 3)), -limit, limit)
    new_side = side * np.exp(_JITTER_LOG_SCALE_MEAN + _JITTER_LOG_SCALE * z[:, 2])
    cx = x + w / 2 + _JITTER_SHIFT * side * z[:, 0]
    cy = y + h / 2 + _JITTER_SHIFT * side * z[:, 1]
    return np.stack([cx - new_side / 2, cy - new_side / 2, new_side, new_side], axis=1)


def _fit_inside(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Shift (and if need be shrink) boxes so their crop regions stay inside the image."""
    margin_ratio = CROP_SIZE / (CROP_SIZE - 2 * CROP_MARGIN)
    boxes = boxes.copy()
    limit = min(width, height) / margin_ratio
    boxes[:, 2:] = np.minimum(boxes[:, 2:], limit)
    grow = boxes[:, 2:] * (margin_ratio - 1) / 2
    boxes[:, 0] = np.clip(boxes[:, 0], grow[:, 0], width - boxes[:, 2] - grow[:, 0])
    boxes[:, 1] = np.clip(boxes[:, 1], grow[:, 1], height - boxes[:, 3] - grow[:, 1])
    return boxes


@dataclass
class CropSet:
    """Labelled verifier crops.

    Attributes
    ----------
    crops : (N, S, S) uint8 ndarray
    labels : (N,) int64 ndarray
        1 face, 0 not a face.
    sources : (N,) ndarray of str
        Where each crop came from (``caltech``, ``orl``, ``background``, ``cbcl``).
    """

    crops: np.ndarray
    labels: np.ndarray
    sources: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="<U10"))

    def __post_init__(self) -> None:
        n = len(self.crops)
        if self.labels.shape != (n,) or (self.sources.size and self.sources.shape != (n,)):
            raise ValueError("crops, labels and sources must have the same length")

    def __len__(self) -> int:
        return int(self.labels.size)

    @classmethod
    def concatenate(cls, parts: Sequence[CropSet]) -> CropSet:
        """One set holding every part, in order."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls(np.zeros((0, CROP_SIZE, CROP_SIZE), np.uint8), np.zeros(0, np.int64),
                       np.zeros(0, "<U10"))
        return cls(
            np.concatenate([p.crops for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.sources for p in parts]).astype("<U10"),
        )

    def counts(self) -> dict[str, int]:
        """Crops per source and label, e.g. ``{"caltech/face": 9000, ...}``."""
        keys = [f"{s}/{'face' if y else 'nonface'}" for s, y in zip(self.sources, self.labels,
                                                                    strict=True)]
        names, counts = np.unique(np.array(keys, dtype=str), return_counts=True)
        return {str(k): int(v) for k, v in zip(names, counts, strict=True)}


def _labelled(crops: np.ndarray, label: int, source: str) -> CropSet:
    n = len(crops)
    return CropSet(crops, np.full(n, label, np.int64), np.full(n, source, dtype="<U10"))


def caltech_positives(
    files: Sequence[Path], rng: np.random.Generator, *, per_face: int = 2
) -> CropSet:
    """Face crops from Caltech 36 x 36 images with cascade-like jittered boxes.

    The crops' context comes from the image itself: boxes are shifted to keep their
    regions inside it, since repeated border pixels would mark the positives.
    """
    out = []
    for path in files:
        image = read_gray(path)
        h, w = image.shape
        sx, sy = w / 36.0, h / 36.0
        x, y, bw, bh = CALTECH_FACE_BOX
        boxes = face_jitter((x * sx, y * sy, bw * sx, bh * sy), per_face, rng)
        boxes = np.rint(_fit_inside(boxes, w, h)).astype(np.int64)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], 8)
        out.append(extract_crops(image, boxes))
    crops = np.concatenate(out) if out else np.zeros((0, CROP_SIZE, CROP_SIZE), np.uint8)
    return _labelled(crops, 1, "caltech")


def cbcl_negatives(files: Sequence[Path]) -> CropSet:
    """The CBCL non-face patches, each resized whole to one crop."""
    crops = [cv2.resize(read_gray(p), (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_LINEAR)
             for p in files]
    arr = np.stack(crops) if crops else np.zeros((0, CROP_SIZE, CROP_SIZE), np.uint8)
    return _labelled(arr, 0, "cbcl")


def cascade_samples(
    images: Iterable[tuple[np.ndarray, np.ndarray]],
    detector,
    rng: np.random.Generator,
    *,
    source: str,
    scale_factor: float = 1.1,
    min_size: int | None = None,
    max_per_image: int = 30,
    positive_iou: float = 0.5,
    negative_iou: float = 0.3,
) -> CropSet:
    """The windows a cascade accepts, labelled against known faces.

    Parameters
    ----------
    images : iterable of (gray image, (K, 4) face boxes)
        Images with every face boxed (``K = 0`` for background photos).
    detector : vj.CascadeDetector or sequence of them
        The lenient cascade whose raw windows are wanted; with several, the union of
        their windows (a verifier meant for any of them sees the windows of each).
    rng : Generator
        Draws the subsample of windows kept per image.
    source : str
        Source name recorded with each crop.
    scale_factor, min_size : optional
        The cascade's scan.
    max_per_image : int, optional
        At most this many windows per image and label (random subset).
    positive_iou, negative_iou : float, optional
        A window is a face at IoU >= ``positive_iou`` with a face box, not a face below
        ``negative_iou`` with every one; windows in between are left out.

    Returns
    -------
    CropSet
    """
    detectors = list(detector) if isinstance(detector, (list, tuple)) else [detector]
    parts = []
    for image, faces in images:
        found = [d.candidates(image, scale_factor, min_size) for d in detectors]
        cand = found[0] if len(found) == 1 else np.unique(np.concatenate(found), axis=0)
        if len(cand) == 0:
            continue
        faces = np.asarray(faces, np.float64).reshape(-1, 4)
        best = box_iou(cand, faces).max(axis=1) if len(faces) else np.zeros(len(cand))
        for label, mask in ((1, best >= positive_iou), (0, best < negative_iou)):
            index = np.flatnonzero(mask)
            if index.size > max_per_image:
                index = np.sort(rng.choice(index, max_per_image, replace=False))
            if index.size:
                parts.append(_labelled(extract_crops(image, cand[index]), label, source))
    return CropSet.concatenate(parts)


@dataclass
class Scene:
    """A photograph with every face boxed.

    Attributes
    ----------
    image : (H, W) uint8 ndarray
    faces : (K, 4) int64 ndarray
        ``x, y, w, h`` in the cascade's box convention.
    name : str
    """

    image: np.ndarray
    faces: np.ndarray
    name: str = ""


def orl_face_box(image: np.ndarray, annotators: Sequence) -> np.ndarray:
    """The face box of an ORL image, from the boxes of several cascades.

    An ORL image is a head-and-shoulders portrait: the face is the largest face-like
    thing in it, and cascades err towards smaller boxes on its parts (mouth and chin).
    So the largest box any annotator (a ``vj.CascadeDetector``) finds is taken, unless
    it is much smaller than the median ORL face, in which case the median box (scaled
    to the image) stands in.
    """
    h, w = image.shape
    x, y, bw, bh = ORL_FACE_BOX
    median = np.rint([x * w / 92, y * h / 112, bw * w / 92, bh * h / 112]).astype(np.int64)
    found = [det.detect(image, 1.05, 2, 30) for det in annotators]
    boxes = np.concatenate([b for b in found if len(b)] or [np.zeros((0, 4), np.int32)])
    if len(boxes) == 0:
        return median
    best = boxes[np.argmax(boxes[:, 2])].astype(np.int64)
    return best if best[2] >= 0.85 * median[2] else median


def orl_scenes(files: Sequence[Path], annotators: Sequence) -> list[Scene]:
    """ORL images as detection scenes of one face each (see :func:`orl_face_box`)."""
    scenes = []
    for path in files:
        image = read_gray(path)
        box = orl_face_box(image, annotators)
        scenes.append(Scene(image, box[None], f"orl/{path.parent.name}/{path.name}"))
    return scenes


def _cover(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale to cover ``width x height`` and crop the centre."""
    h, w = image.shape
    s = max(width / w, height / h)
    scaled = cv2.resize(image, (max(width, round(w * s)), max(height, round(h * s))),
                        interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    top = (scaled.shape[0] - height) // 2
    left = (scaled.shape[1] - width) // 2
    return scaled[top:top + height, left:left + width]


def _feathered(h: int, w: int, feather: float) -> np.ndarray:
    """A ``(h, w)`` alpha mask: 1 inside, ramping to 0 over ``feather`` pixels at the edges."""
    ys = np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5)
    xs = np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5)
    ramp = np.minimum(ys[:, None], xs[None, :]) / max(feather, 1e-6)
    return np.clip(ramp, 0.0, 1.0).astype(np.float32)


def make_scenes(
    backgrounds: Sequence[Path],
    caltech: Sequence[Path],
    orl: Sequence[tuple[np.ndarray, np.ndarray]],
    n_scenes: int,
    rng: np.random.Generator,
    *,
    size: tuple[int, int] = (640, 480),
    faces_per_scene: tuple[int, int] = (3, 10),
    caltech_sides: tuple[float, float] = (24.0, 60.0),
    orl_sides: tuple[float, float] = (30.0, 140.0),
) -> list[Scene]:
    """Crowded test scenes: faces pasted at many sizes into face-free photographs.

    Parameters
    ----------
    backgrounds : sequence of Path
        Photos with no faces; each scene uses one (scaled to cover ``size``).
    caltech : sequence of Path
        36 x 36 face crops, pasted with feathered edges. Their face box side is drawn
        log-uniformly from ``caltech_sides`` (beyond ~2x upscaling they blur).
    orl : sequence of (image, face box)
        Whole ORL images with their face box, pasted with feathered edges; face side
        drawn from ``orl_sides``.
    n_scenes : int
    rng : Generator
    size : (width, height), optional
    faces_per_scene : (int, int), optional
        Inclusive range of faces per scene (fewer when they do not fit).

    Returns
    -------
    list of Scene
    """
    if n_scenes < 1 or not backgrounds or not (caltech or orl):
        raise ValueError("need n_scenes >= 1, background photos and faces to paste")
    width, height = size
    scenes = []
    for k in range(n_scenes):
        path = backgrounds[int(rng.integers(len(backgrounds)))]
        canvas = _cover(read_gray(path), width, height).astype(np.float32)
        taken: list[tuple[int, int, int, int]] = []
        faces = []
        for _ in range(int(rng.integers(faces_per_scene[0], faces_per_scene[1] + 1))):
            use_orl = bool(orl) and (not caltech or rng.random() < 0.5)
            if use_orl:
                patch, box = orl[int(rng.integers(len(orl)))]
                lo, hi = orl_sides
            else:
                patch = read_gray(caltech[int(rng.integers(len(caltech)))])
                box = np.array(CALTECH_FACE_BOX) * patch.shape[1] / 36.0
                lo, hi = caltech_sides
            side = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            s = side / float(box[2])
            ph, pw = round(patch.shape[0] * s), round(patch.shape[1] * s)
            if ph >= height or pw >= width or min(ph, pw) < 4:
                continue
            for _attempt in range(20):
                top, left = int(rng.integers(height - ph + 1)), int(rng.integers(width - pw + 1))
                if all(left + pw <= x0 or x1 <= left or top + ph <= y0 or y1 <= top
                       for x0, y0, x1, y1 in taken):
                    break
            else:
                continue
            scaled = cv2.resize(patch, (pw, ph), interpolation=cv2.INTER_AREA if s < 1
                                else cv2.INTER_LINEAR).astype(np.float32)
            alpha = _feathered(ph, pw, 0.06 * min(ph, pw))
            region = canvas[top:top + ph, left:left + pw]
            region[...] = alpha * scaled + (1 - alpha) * region
            taken.append((left, top, left + pw, top + ph))
            faces.append([left + box[0] * s, top + box[1] * s, box[2] * s, box[3] * s])
        image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
        boxes = np.rint(np.array(faces, np.float64).reshape(-1, 4)).astype(np.int64)
        scenes.append(Scene(image, boxes, f"scene/{k:04d}/{path.name}"))
    return scenes


def assemble_crops(
    split: SourceSplit,
    part: str,
    detector,
    annotators: Sequence,
    rng: np.random.Generator,
    *,
    per_face: int = 2,
    max_per_image: int = 30,
    max_backgrounds: int | None = None,
    n_scenes: int = 0,
    scale_factor: float = 1.1,
    progress=None,
) -> CropSet:
    """Every verifier crop of one part of the split.

    Parameters
    ----------
    split : SourceSplit
    part : {"train", "tune", "eval"}
    detector : vj.CascadeDetector or sequence of them
        The lenient cascade(s): their accepted windows are the crops to judge.
    annotators : sequence of vj.CascadeDetector
        Cascades that box the ORL faces (see :func:`orl_face_box`).
    rng : Generator
    per_face : int, optional
        Jittered boxes per Caltech face.
    max_per_image : int, optional
        Cascade windows kept per image and label.
    max_backgrounds : int, optional
        Use at most this many background photos (a random subset); all by default.
    n_scenes : int, optional
        Also take the cascade's windows on this many scenes of the part's own faces
        pasted into its own backgrounds (:func:`make_scenes`): faces at every size,
        sharp and upscaled, among real clutter, as in crowded photographs.
    scale_factor : float, optional
        Pyramid step of the cascade's scan.
    progress : callable, optional
        Wraps the background iterable (e.g. ``tqdm``).

    Returns
    -------
    CropSet
    """
    if part not in SPLITS:
        raise ValueError(f"part must be one of {SPLITS}, got {part!r}")
    backgrounds = list(split.backgrounds[part])
    if max_backgrounds is not None and len(backgrounds) > max_backgrounds:
        backgrounds = [backgrounds[i] for i in
                       np.sort(rng.choice(len(backgrounds), max_backgrounds, replace=False))]
    wrap = progress or (lambda it, **_: it)
    orl = [(s.image, s.faces[0]) for s in orl_scenes(split.orl[part], annotators)]
    no_faces = np.zeros((0, 4), np.int64)
    scenes = []
    if n_scenes:
        scenes = make_scenes(split.backgrounds[part], split.caltech[part], orl, n_scenes, rng)
    return CropSet.concatenate([
        caltech_positives(split.caltech[part], rng, per_face=per_face),
        cascade_samples(((im, box[None]) for im, box in orl), detector, rng, source="orl",
                        scale_factor=scale_factor,
                        max_per_image=max_per_image),
        cascade_samples(((read_gray(p), no_faces) for p in wrap(backgrounds, desc=part)),
                        detector, rng, source="background", scale_factor=scale_factor,
                        max_per_image=max_per_image),
        cascade_samples(((s.image, s.faces) for s in wrap(scenes, desc=f"{part} scenes")),
                        detector, rng, source="scene", scale_factor=scale_factor,
                        max_per_image=max_per_image),
        cbcl_negatives(split.nonfaces[part]),
    ])


def match_detections(
    scenes: Sequence[Scene],
    detections: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    iou: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Label every detection true or false positive against the scenes' faces.

    Detections are taken in order of decreasing score; each claims the unclaimed face
    it overlaps most, if that overlap reaches ``iou``. A second detection of a claimed
    face is a false positive.

    Parameters
    ----------
    scenes : sequence of Scene
    detections : sequence of (boxes (N, 4), scores (N,))
        One entry per scene.
    iou : float, optional
        Overlap a detection needs with a face.

    Returns
    -------
    scores : (D,) float64 ndarray
        All detections' scores.
    true_positive : (D,) bool ndarray
    n_faces : int
        Faces in all scenes.
    """
    if len(scenes) != len(detections):
        raise ValueError(f"{len(scenes)} scenes but {len(detections)} detection lists")
    all_scores, all_tp, n_faces = [], [], 0
    for scene, (boxes, scores) in zip(scenes, detections, strict=True):
        boxes = np.asarray(boxes).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        if len(boxes) != len(scores):
            raise ValueError("each detection needs one score")
        n_faces += len(scene.faces)
        tp = np.zeros(len(boxes), bool)
        if len(boxes) and len(scene.faces):
            overlap = box_iou(boxes, scene.faces)
            free = np.ones(len(scene.faces), bool)
            for i in np.argsort(-scores, kind="stable"):
                candidates = np.where(free, overlap[i], -1.0)
                j = int(np.argmax(candidates))
                if candidates[j] >= iou:
                    tp[i], free[j] = True, False
        all_scores.append(scores)
        all_tp.append(tp)
    if not all_scores:
        return np.zeros(0), np.zeros(0, bool), n_faces
    return np.concatenate(all_scores), np.concatenate(all_tp), n_faces


def detection_rate_curve(
    scores: np.ndarray, true_positive: np.ndarray, n_faces: int
) -> tuple[np.ndarray, np.ndarray]:
    """Faces found against false positives, over every score threshold.

    Returns
    -------
    false_positives : (T,) int64 ndarray
        False positives at each threshold, from the strictest to the most lenient.
    detection_rate : (T,) float64 ndarray
        Fraction of the ``n_faces`` found at that threshold.
    """
    if n_faces < 1:
        raise ValueError("need at least one face to measure a detection rate")
    order = np.argsort(-scores, kind="stable")
    s, tp = scores[order], true_positive[order]
    cum_tp, cum_fp = np.cumsum(tp), np.cumsum(~tp)
    # A threshold keeps all detections of equal score, so only the last of a run counts.
    last = np.r_[s[1:] != s[:-1], True] if s.size else np.zeros(0, bool)
    return (np.r_[0, cum_fp[last]].astype(np.int64),
            np.r_[0, cum_tp[last]].astype(np.float64) / n_faces)


def detection_rate_at(
    scores: np.ndarray, true_positive: np.ndarray, n_faces: int, false_positives: int
) -> float:
    """Best fraction of faces found with at most ``false_positives`` false positives."""
    fp, rate = detection_rate_curve(scores, true_positive, n_faces)
    ok = fp <= false_positives
    return float(rate[ok].max()) if ok.any() else 0.0


def false_positives_at(
    scores: np.ndarray, true_positive: np.ndarray, n_faces: int, detection_rate: float
) -> int | None:
    """Fewest false positives with which ``detection_rate`` of the faces are found.

    ``None`` when no threshold reaches that rate.
    """
    fp, rate = detection_rate_curve(scores, true_positive, n_faces)
    ok = rate >= detection_rate - 1e-12
    return int(fp[ok].min()) if ok.any() else None
