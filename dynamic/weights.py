"""Saving and loading network weights as state dicts.

Files are written atomically (a temporary file in the same folder, then ``os.replace``)
so that an interrupted save never leaves a truncated checkpoint behind, and loaded with
``weights_only=True`` so that loading cannot execute code from the file.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from vj.atomic import atomic_write_bytes

__all__ = ["load_weights", "save_weights"]


def save_weights(module: nn.Module, path: str | Path) -> Path:
    """Write ``module.state_dict()`` to ``path`` atomically.

    Parameters
    ----------
    module : nn.Module
        Network whose parameters and buffers are saved.
    path : path
        Destination file; its folder must exist.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"folder {path.parent} does not exist")
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    # The project's atomic write: a temporary file, a rename, the usual permissions.
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_weights(module: nn.Module, path: str | Path, *, strict: bool = True) -> nn.Module:
    """Load a state dict saved by :func:`save_weights` into ``module`` (in place).

    Returns
    -------
    nn.Module
        ``module``, for chaining.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no weights file at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    module.load_state_dict(state, strict=strict)
    return module
