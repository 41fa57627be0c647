"""Training checkpoints: one file, written atomically, read without pickle.

A checkpoint is an ``.npz`` archive of named arrays plus a JSON document
(stored as the uint8 array ``__meta__``). It is written to a temporary file and
renamed over the old one, so a run killed at any moment (even with SIGKILL)
leaves either the previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes

__all__ = ["load_checkpoint", "save_checkpoint"]

_META = "__meta__"


def save_checkpoint(path: str | os.PathLike, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write ``meta`` (JSON-serialisable) and ``arrays`` to ``path`` atomically."""
    if _META in arrays:
        raise ValueError(f"array name {_META!r} is reserved")
    buf = io.BytesIO()
    blob = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), np.uint8)
    np.savez(buf, **{_META: blob}, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    FileNotFoundError
        If there is no checkpoint at ``path``.
    ValueError
        If the file is not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with np.load(path, allow_pickle=False) as z:
        if _META not in z.files:
            raise ValueError(f"{path} is not a training checkpoint (no {_META} entry)")
        meta = json.loads(z[_META].tobytes().decode("utf-8"))
        arrays = {k: z[k] for k in z.files if k != _META}
    return meta, arrays
