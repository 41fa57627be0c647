"""The project's own cascade file format: versioned JSON, read without pickle.

Layout (version 1)::

    {"format": "vj-cascade", "version": 1,
     "window": [w, h],
     "features": {"rects": [[[x, y, w, h] x3] ...], "weights": [[w0, w1, w2] ...],
                  "tilted": [0/1 ...]},
     "node_feature": [...], "node_threshold": [...], "node_left": [...],
     "node_right": [...], "tree_nodes": [...], "leaf_values": [...],
     "stage_trees": [...], "stage_threshold": [...],
     "metadata": {...}}

The array fields are exactly those of :class:`vj.cascade.Cascade`. Floats are
written with 9 significant digits, which round-trips every float32.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .atomic import atomic_write_text
from .cascade import Cascade
from .features import HaarFeatureSet
from .opencv_xml import CascadeFormatError

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "read_model", "write_model"]

FORMAT_NAME = "vj-cascade"
FORMAT_VERSION = 1
_INT_FIELDS = ("node_feature", "node_left", "node_right", "tree_nodes", "stage_trees")
_FLOAT_FIELDS = ("node_threshold", "leaf_values", "stage_threshold")


def _floats(a: np.ndarray) -> list[float]:
    return [float(f"{float(v):.9g}") for v in np.asarray(a, np.float32).ravel()]


def write_model(cascade: Cascade, path: str | os.PathLike) -> None:
    """Write ``cascade`` to ``path`` in the project's JSON format (atomically)."""
    f = cascade.features
    doc: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "window": list(cascade.window),
        "features": {
            "rects": f.rects.tolist(),
            "weights": np.array(_floats(f.weights)).reshape(f.weights.shape).tolist(),
            "tilted": f.tilted.astype(int).tolist(),
        },
    }
    for name in _INT_FIELDS:
        doc[name] = getattr(cascade, name).tolist()
    for name in _FLOAT_FIELDS:
        doc[name] = _floats(getattr(cascade, name))
    doc["metadata"] = cascade.metadata
    atomic_write_text(path, json.dumps(doc, separators=(",", ":"), sort_keys=False) + "\n")


def read_model(path: str | os.PathLike) -> Cascade:
    """Read a cascade written by :func:`write_model`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    CascadeFormatError
        If the file is not a readable model of a supported version.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CascadeFormatError(f"{path}: not a {FORMAT_NAME} JSON file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise CascadeFormatError(f"{path}: not a {FORMAT_NAME} file (no 'format' marker)")
    version = doc.get("version")
    if version != FORMAT_VERSION:
        raise CascadeFormatError(
            f"{path}: format version {version!r} is not supported (this library reads "
            f"version {FORMAT_VERSION})"
        )
    try:
        feats = doc["features"]
        n = len(feats["tilted"])
        features = HaarFeatureSet(
            tuple(doc["window"]),
            np.array(feats["rects"], np.int32).reshape(n, 3, 4),
            np.array(feats["weights"], np.float32).reshape(n, 3),
            np.array(feats["tilted"], np.bool_),
        )
        arrays = {name: np.array(doc[name], np.int32) for name in _INT_FIELDS}
        arrays.update({name: np.array(doc[name], np.float32) for name in _FLOAT_FIELDS})
        metadata = doc.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ValueError("metadata must be an object")
        return Cascade(features=features, metadata=metadata, **arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise CascadeFormatError(f"{path}: damaged {FORMAT_NAME} file ({exc!s})") from None
