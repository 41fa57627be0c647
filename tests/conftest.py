"""Shared fixtures: where the shared face data lives, and small real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vj.image_sources import default_data_dir

REPO = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path | None:
    """``$VJ_DATA`` or ``../shared/data`` beside the repository, if it exists."""
    path = default_data_dir()
    return path if path is not None and path.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared face data not found (set VJ_DATA)")
    return path


@pytest.fixture(scope="session")
def sample_images() -> dict[str, np.ndarray]:
    """Grayscale photographs that ship with scikit-image."""
    import cv2
    import skimage.data as d

    out = {}
    for name in ("astronaut", "camera", "coffee", "chelsea", "rocket", "page", "coins",
                 "immunohistochemistry", "motorcycle_left", "hubble_deep_field"):
        try:
            img = getattr(d, name)()
        except Exception:  # some images need an optional download
            continue
        if img.ndim == 3:
            img = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)
        out[name] = np.ascontiguousarray(img.astype(np.uint8))
    return out
