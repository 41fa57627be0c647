"""vj: fast Viola-Jones object detection (Numba), exact with OpenCV 4's Haar cascades.

The modules follow the paper: :mod:`vj.integral` (integral images),
:mod:`vj.features` (Haar features), boosting and cascade training, then
:mod:`vj.cascade` (the model), :mod:`vj.pyramid` / :mod:`vj.scan` /
:mod:`vj.grouping` / :mod:`vj.detector` (multi-scale detection), and the file
formats :mod:`vj.opencv_xml` and :mod:`vj.model_file`.

>>> import vj
>>> det = vj.load("opencv:default")          # or "frontalface", or a file path
>>> boxes = det.detect(gray_or_bgr_image)    # doctest: +SKIP
"""

from __future__ import annotations

import os

from .cascade import Cascade
from .detector import CascadeDetector
from .features import HaarFeatureSet
from .grouping import group_rectangles
from .integral import integral_image, integral_images
from .models import BUILTIN, read_cascade, write_cascade
from .opencv_xml import CascadeFormatError
from .stats import DetectionStats, Detector, StageStats
from .threads import start_numba_threads

start_numba_threads()  # before anything imports PyTorch: see vj.threads

__all__ = [
    "BUILTIN",
    "Cascade",
    "CascadeDetector",
    "CascadeFormatError",
    "DetectionStats",
    "Detector",
    "HaarFeatureSet",
    "StageStats",
    "group_rectangles",
    "integral_image",
    "integral_images",
    "load",
    "load_cascade",
    "save",
]

__version__ = "0.1.0"


def load_cascade(name_or_path: str | os.PathLike) -> Cascade:
    """Read a :class:`Cascade` (built-in name, OpenCV Haar XML, or own ``.json`` model)."""
    return read_cascade(name_or_path)


def load(name_or_path: str | os.PathLike | Cascade) -> CascadeDetector:
    """A detector for a built-in name, an OpenCV Haar XML, an own model file or a Cascade.

    Built-in names: ``"frontalface"`` (this project's model) and ``"opencv:<name>"`` for
    OpenCV 4's 17 bundled Haar XMLs (``"opencv:default"``, ``"opencv:alt"``,
    ``"opencv:alt2"``, ``"opencv:eye"``, ... : ``vj.BUILTIN``), read from the OpenCV 4
    install or, under OpenCV 5, from the model cache that ``vj-models fetch opencv`` fills.
    """
    cascade = name_or_path if isinstance(name_or_path, Cascade) else read_cascade(name_or_path)
    return CascadeDetector(cascade)


def save(cascade: Cascade, path: str | os.PathLike) -> None:
    """Write ``cascade`` atomically: OpenCV XML for ``*.xml``, else the own JSON format."""
    write_cascade(cascade, path)
