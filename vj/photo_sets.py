"""Annotated real photographs: WIDER-style box lists, scoring sets and don't-care boxes.

A *photo set* is a folder of photographs with box lists beside it, as in the shared
data's ``photos/wider_val`` (see its README):

* ``annotations.txt``: ``image_relpath x y w h``, every annotated face;
* ``annotations_eval24.txt``: the same format, the *scoring set* (the faces a detector
  is asked to find); every annotated box not in it is "don't care": a detection on it
  is neither a hit nor a false positive;
* ``annotations_attrs.txt`` (optional): every box with WIDER's attribute codes (blur,
  expression, illumination, invalid, occlusion, pose), in a header-named column layout;
* ``image_list.txt`` (optional): the images in their canonical order, including those
  without faces.

Box coordinates may be fractional. Scoring boxes are found among all boxes by their
exact text, so the two files must spell a box the same way (as WIDER's tools write
them). The same layout of ``annotations.txt`` and ``annotations_attrs.txt`` describes
the face crops of ``faces/wider_train``, read with :func:`read_box_list` and
:func:`read_box_attributes`.

Recall is also broken down by how the face looks (:func:`face_photometrics`: mean gray
and contrast of the face box), so that a detector that misses dim, low-contrast faces
more often than others shows it.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "ATTRIBUTES",
    "SUBSETS",
    "AnnotatedPhoto",
    "PhotoSet",
    "boxes_of",
    "face_photometrics",
    "read_box_attributes",
    "read_box_list",
    "read_photo_set",
    "tercile_labels",
]

#: WIDER's attribute codes, in the order of ``annotations_attrs.txt``.
ATTRIBUTES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")

#: Parts of a photo set by position in its image list: choose on one, confirm on the other.
SUBSETS = ("all", "even", "odd")


def _parse_lines(path: Path):
    """``(lineno, fields)`` of the non-blank, non-comment lines of ``path``."""
    if not path.is_file():
        raise FileNotFoundError(f"box list {path} not found")
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield lineno, line.split()


def _box(path: Path, lineno: int, fields: list[str]) -> tuple[float, float, float, float]:
    try:
        x, y, w, h = (float(v) for v in fields[1:5])
    except ValueError:
        raise ValueError(f"{path}:{lineno}: expected 'image x y w h', got {fields!r}") from None
    if not (np.isfinite([x, y, w, h]).all() and w > 0 and h > 0):
        raise ValueError(f"{path}:{lineno}: box needs finite values and w, h > 0, got {fields}")
    return x, y, w, h


def read_box_list(path: str | os.PathLike) -> dict[str, list[tuple[str, ...]]]:
    """A ``image_relpath x y w h`` list as ``{relpath: [box text, ...]}`` in file order.

    Each box is kept as its four coordinate strings (:func:`boxes_of` turns them into
    numbers), so that two lists can be matched box by box exactly.

    Raises
    ------
    FileNotFoundError
        If the list is missing.
    ValueError
        For a malformed line (file and line number in the message).
    """
    path = Path(path)
    out: dict[str, list[tuple[str, ...]]] = {}
    for lineno, fields in _parse_lines(path):
        if len(fields) < 5:
            raise ValueError(f"{path}:{lineno}: expected 'image x y w h', got {fields!r}")
        _box(path, lineno, fields)
        out.setdefault(fields[0], []).append(tuple(fields[1:5]))
    return out


def read_box_attributes(path: str | os.PathLike) -> dict[str, list[tuple[tuple[str, ...], dict]]]:
    """``annotations_attrs.txt``: ``{relpath: [(box text, {attribute: int}), ...]}``.

    The columns after the box are named by the header comment's first line; the six
    WIDER codes (:data:`ATTRIBUTES`) are read as integers and any others kept as text.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`read_box_list`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"attribute list {path} not found")
    first = path.read_text().split("\n", 1)[0]
    if not first.startswith("#"):
        raise ValueError(f"{path}: expected a '# image x y w h <names>' header line")
    names = first.lstrip("#").split("(")[0].split()[5:]
    missing = [a for a in ATTRIBUTES if a not in names]
    if missing:
        raise ValueError(f"{path}: header lacks the attribute columns {missing}")
    out: dict[str, list[tuple[tuple[str, ...], dict]]] = {}
    for lineno, fields in _parse_lines(path):
        if len(fields) < 5 + len(names):
            raise ValueError(f"{path}:{lineno}: expected {5 + len(names)} fields, "
                             f"got {len(fields)}")
        _box(path, lineno, fields)
        values: dict = dict(zip(names, fields[5:5 + len(names)], strict=True))
        try:
            for a in ATTRIBUTES:
                values[a] = int(values[a])
        except ValueError:
            raise ValueError(f"{path}:{lineno}: attribute codes must be integers") from None
        out.setdefault(fields[0], []).append((tuple(fields[1:5]), values))
    return out


def boxes_of(texts: list[tuple[str, ...]]) -> np.ndarray:
    """Box texts -> ``(N, 4)`` float64 ``x, y, w, h``."""
    return np.asarray([[float(v) for v in t] for t in texts], np.float64).reshape(-1, 4)


@dataclass(frozen=True)
class AnnotatedPhoto:
    """One photograph: the faces to find and the boxes to ignore.

    Attributes
    ----------
    path : Path
    faces : (F, 4) float64 ndarray
        The scoring set's faces, ``x, y, w, h`` (tight WIDER boxes).
    ignore : (G, 4) float64 ndarray
        Every other annotated box: "don't care".
    attributes : dict of str to (F,) int64 ndarray
        WIDER attribute codes of each face (empty without an attribute list).
    """

    path: Path
    faces: np.ndarray
    ignore: np.ndarray
    attributes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PhotoSet:
    """Annotated photographs in their canonical order (:func:`read_photo_set`)."""

    root: Path
    photos: tuple[AnnotatedPhoto, ...]

    def __len__(self) -> int:
        return len(self.photos)

    @property
    def n_faces(self) -> int:
        """Faces in the scoring set."""
        return int(sum(len(p.faces) for p in self.photos))

    def subset(self, part: str = "all", max_photos: int | None = None) -> PhotoSet:
        """``"all"``, or the ``"even"`` / ``"odd"``-numbered photos; the first ``max_photos``."""
        if part not in SUBSETS:
            raise ValueError(f"unknown subset {part!r}; choose from {', '.join(SUBSETS)}")
        photos = self.photos if part == "all" else self.photos[SUBSETS.index(part) - 1::2]
        if max_photos is not None:
            if max_photos < 1:
                raise ValueError(f"max_photos must be >= 1, got {max_photos}")
            photos = photos[:max_photos]
        return PhotoSet(self.root, tuple(photos))


def _image_order(root: Path, listed: dict) -> list[str]:
    """Relpaths in ``image_list.txt``'s order (with the faceless), else sorted."""
    order_file = root / "image_list.txt"
    if not order_file.is_file():
        return sorted(listed)
    return [fields[0] for _, fields in _parse_lines(order_file)]


def _attribute_arrays(attrs, rel: str, faces: list[tuple[str, ...]], root: Path) -> dict:
    entries = list(attrs.get(rel, []))
    codes = {a: [] for a in ATTRIBUTES}
    for box in faces:
        hit = next((k for k, (b, _) in enumerate(entries) if b == box), None)
        if hit is None:
            raise ValueError(f"{root}: scoring box {rel} {' '.join(box)} has no attributes")
        _, values = entries.pop(hit)
        for a in ATTRIBUTES:
            codes[a].append(values[a])
    return {a: np.asarray(v, np.int64) for a, v in codes.items()}


def read_photo_set(root: str | os.PathLike) -> PhotoSet:
    """Read a photo set folder (module docstring).

    Raises
    ------
    FileNotFoundError
        If the folder, a box list or a listed image is missing.
    ValueError
        For malformed lists, or a scoring box that is not among all the boxes.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"photo set folder {root} not found")
    every = read_box_list(root / "annotations.txt")
    scored = read_box_list(root / "annotations_eval24.txt")
    attr_file = root / "annotations_attrs.txt"
    attrs = read_box_attributes(attr_file) if attr_file.is_file() else None
    photos = []
    for rel in _image_order(root, every):
        path = root / rel
        if not path.is_file():
            raise FileNotFoundError(f"{root}: listed image {rel} not found")
        faces = scored.get(rel, [])
        rest = Counter(every.get(rel, []))
        rest.subtract(Counter(faces))
        if any(v < 0 for v in rest.values()):
            raise ValueError(f"{root}: a scoring box of {rel} is not in annotations.txt")
        ignore = []
        for b in every.get(rel, []):
            if rest[b] > 0:  # a box listed twice is ignored as often as it is not scored
                rest[b] -= 1
                ignore.append(b)
        photos.append(AnnotatedPhoto(
            path, boxes_of(faces), boxes_of(ignore),
            {} if attrs is None else _attribute_arrays(attrs, rel, faces, root)))
    unknown = set(scored) - set(every)
    if unknown:
        raise ValueError(f"{root}: scoring boxes for images without annotations: "
                         f"{sorted(unknown)[:3]}")
    return PhotoSet(root, tuple(photos))


def face_photometrics(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mean gray level and contrast (standard deviation) inside each box.

    Parameters
    ----------
    image : (H, W) uint8 ndarray
    boxes : (N, 4) array_like
        ``x, y, w, h``; clipped to the image (a box wholly outside gives NaN).

    Returns
    -------
    (N, 2) float64 ndarray
        ``mean, std`` of the box's pixels.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D gray, got shape {image.shape}")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.full((len(boxes), 2), np.nan)
    h, w = image.shape
    for i, (x, y, bw, bh) in enumerate(boxes):
        x0, y0 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
        x1, y1 = min(w, int(np.ceil(x + bw))), min(h, int(np.ceil(y + bh)))
        if x1 > x0 and y1 > y0:
            patch = image[y0:y1, x0:x1].astype(np.float64)
            out[i] = patch.mean(), patch.std()
    return out


def tercile_labels(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which third of ``values`` each one falls in (0 lowest, 2 highest), and the edges.

    Returns
    -------
    labels : (N,) int64 ndarray
    edges : (2,) float64 ndarray
        The 1/3 and 2/3 quantiles.
    """
    values = np.asarray(values, np.float64)
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError("need at least one value, all finite")
    edges = np.quantile(values, [1 / 3, 2 / 3])
    return np.searchsorted(edges, values, side="right").astype(np.int64), edges
