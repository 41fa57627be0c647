"""The work of batch detection on one partition of images, in whichever process runs it.

A *detector spec* (:class:`DetectorSpec`: the cascade itself, and whether to verify)
becomes a detector once per process: :func:`install_detector` builds it and keeps it
under the spec's fingerprint, :func:`detect_partition` looks it up. In a Dask worker
the install is done by a worker plugin (:mod:`vj.batch_dask`) when the worker starts,
so tasks carry only the fingerprint and a list of file paths, never pixels or models.
With ``verify`` the neural verifiers (PyTorch) are loaded here, lazily: the process
that only coordinates never imports torch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numba
import numpy as np

from .cascade import Cascade
from .detector import CascadeDetector
from .image_sources import read_image

__all__ = ["DetectionSettings", "DetectorSpec", "detect_partition", "draw_boxes",
           "install_detector", "read_image"]

#: Detectors built in this process, by spec fingerprint (a few: one per model in use).
_DETECTORS: dict[str, Any] = {}
_MAX_DETECTORS = 4


def _size(name: str, value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if np.isscalar(value):
        value = (value, value)
    try:
        w, h = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a (width, height) pair, "
                         f"got {value!r}") from None
    if w < 0 or h < 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")
    return (w, h)


@dataclass(frozen=True)
class DetectionSettings:
    """The options of every ``detect`` call of a batch (see ``CascadeDetector.detect``).

    Raises
    ------
    ValueError
        For a scale factor that is not > 1, a negative ``min_neighbors`` or a bad size.
    """

    scale_factor: float = 1.1
    min_neighbors: int = 3
    min_size: tuple[int, int] | None = None
    max_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        sf = float(self.scale_factor)
        if not np.isfinite(sf) or sf <= 1.0:
            raise ValueError(f"scale_factor must be > 1, got {self.scale_factor!r}")
        if int(self.min_neighbors) != self.min_neighbors or self.min_neighbors < 0:
            raise ValueError(f"min_neighbors must be an integer >= 0, got {self.min_neighbors!r}")
        object.__setattr__(self, "scale_factor", sf)
        object.__setattr__(self, "min_neighbors", int(self.min_neighbors))
        object.__setattr__(self, "min_size", _size("min_size", self.min_size))
        object.__setattr__(self, "max_size", _size("max_size", self.max_size))


@dataclass(frozen=True, eq=False)
class DetectorSpec:
    """What a process needs to build the batch's detector.

    Parameters
    ----------
    cascade : Cascade
    verify : bool
        Wrap it in ``vj_dynamic.face.pipeline.load_verifier`` (PyTorch).
    kernel_threads : int, optional
        Numba / OpenCV threads per detection call in this process (``None``: as
        configured). One per worker process when several share a machine.
    """

    cascade: Cascade
    verify: bool = False
    kernel_threads: int | None = None

    @property
    def fingerprint(self) -> str:
        """A hex digest of the cascade's arrays and the options."""
        h = hashlib.sha256(repr((self.verify, self.kernel_threads)).encode())
        c = self.cascade
        for arr in (c.features.rects, c.features.weights, c.features.tilted, c.node_feature,
                    c.node_threshold, c.node_left, c.node_right, c.tree_nodes, c.leaf_values,
                    c.stage_trees, c.stage_threshold):
            a = np.ascontiguousarray(arr)
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(a.tobytes())
        return h.hexdigest()[:20]


def install_detector(spec: DetectorSpec) -> str:
    """Build the spec's detector in this process (once) and return its fingerprint."""
    key = spec.fingerprint
    if key in _DETECTORS:
        return key
    if spec.verify:
        # Imported here: PyTorch loads only in processes that verify.
        from vj_dynamic.face.pipeline import load_verifier

        if spec.kernel_threads is not None:
            import torch

            torch.set_num_threads(spec.kernel_threads)
        det = load_verifier(spec.cascade)
    else:
        det = CascadeDetector(spec.cascade)
    det.warmup()
    while len(_DETECTORS) >= _MAX_DETECTORS:
        _DETECTORS.pop(next(iter(_DETECTORS)))
    _DETECTORS[key] = (det, spec.kernel_threads)
    return key


def detect_partition(items: list[tuple[str, str]], fingerprint: str,
                     settings: DetectionSettings,
                     draw_dir: str | None = None) -> list[dict[str, Any]]:
    """Detect in every image of a partition; one record per image, errors included.

    Parameters
    ----------
    items : list of (path, key)
        Image files and the keys their records carry.
    fingerprint : str
        Of a spec installed in this process (:func:`install_detector`).
    settings : DetectionSettings
    draw_dir : str, optional
        Also write an annotated copy of each image to ``draw_dir / key``.

    Returns
    -------
    list of dict
        ``{"image": key, "boxes": [[x, y, w, h, score], ...]}`` or
        ``{"image": key, "error": message}``, in the order of ``items``.

    Raises
    ------
    RuntimeError
        If no detector with that fingerprint is installed in this process.
    """
    try:
        det, threads = _DETECTORS[fingerprint]
    except KeyError:
        raise RuntimeError(f"no batch detector {fingerprint} in this process; "
                           "install_detector(spec) first") from None
    if threads is not None:
        # Numba's count is per calling thread, so it is set in the task's own thread.
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        cv2.setNumThreads(threads)
    out = []
    for path, key in items:
        try:
            img = read_image(path)
            boxes, scores = det.detect(img, scale_factor=settings.scale_factor,
                                       min_neighbors=settings.min_neighbors,
                                       min_size=settings.min_size, max_size=settings.max_size,
                                       return_scores=True)
        except (OSError, ValueError, cv2.error) as exc:
            out.append({"image": key, "error": str(exc)})
            continue
        record = {"image": key, "boxes": [[*map(int, b), float(s)]
                                          for b, s in zip(boxes, scores, strict=True)]}
        if draw_dir is not None and not draw_boxes(img, boxes, Path(draw_dir) / key):
            record["warning"] = f"could not write an annotated copy to {Path(draw_dir) / key}"
        out.append(record)
    return out


def draw_boxes(img: np.ndarray, boxes: np.ndarray, out: Path) -> bool:
    """Write ``img`` with ``boxes`` drawn in green to ``out`` (PGM becomes PNG).

    Returns
    -------
    bool
        Whether OpenCV could write the file.
    """
    if img.ndim == 2 or img.shape[2] == 1:
        canvas = cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        canvas = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    else:
        canvas = img.copy()
    for x, y, w, h in np.asarray(boxes).tolist():
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 255, 0), 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    return bool(cv2.imwrite(str(out.with_suffix(".png") if out.suffix.lower() == ".pgm" else out),
                            canvas))
