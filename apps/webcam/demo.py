"""The built-in demo clip: a virtual camera panning and zooming over a scene of faces.

The scene is composited from images that ship with scikit-image, so the demo needs
no files and no network: ``skimage.data.astronaut()`` plus a few faces from
``skimage.data.lfw_subset()`` (25x25 crops, enlarged to different sizes). A slow,
smooth pan and zoom over that scene makes the faces move, enter and leave the frame
and change size, which exercises every scale of the detector.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

__all__ = ["DEMO_CYCLE_FRAMES", "DEMO_FPS", "DEMO_SIZE", "demo_frame", "demo_scene"]

#: Output frame size (width, height).
DEMO_SIZE = (640, 480)
#: Frames in one full pan-and-zoom cycle; the clip loops seamlessly after it.
DEMO_CYCLE_FRAMES = 300
#: Nominal frame rate, used to pace the window and to stamp written videos.
DEMO_FPS = 30.0

_SCENE_SIZE = (1280, 960)
# (index into lfw_subset, edge length in scene pixels, top-left x, top-left y).
# The indices are faces OpenCV's frontal cascade finds once enlarged; the sizes
# span small to large so zooming sweeps several detector scales at once.
_LFW_FACES = (
    (0, 170, 770, 50),
    (2, 120, 1020, 160),
    (5, 95, 1150, 420),
    (7, 150, 740, 580),
    (9, 110, 990, 720),
    (11, 135, 720, 330),
)
# The status panel covers the scene's top-left corner when zoomed out: no faces there.
_ASTRONAUT_ORIGIN = (60, 340)
_ASTRONAUT_EDGE = 560
# Zoom is output pixels per scene pixel: 0.5 shows the whole scene, larger zooms in.
_ZOOM_RANGE = (0.5, 1.0)


def _paste_feathered(scene: np.ndarray, patch: np.ndarray, x: int, y: int, feather: float) -> None:
    """Blend ``patch`` into ``scene`` at (x, y) with soft edges.

    Hard edges around a tight face crop would add strong artificial gradients that
    neither look like a camera image nor help the detector.
    """
    h, w = patch.shape[:2]
    mask = np.zeros((h, w), np.float32)
    border = max(1, int(2 * feather))
    mask[border:-border, border:-border] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), feather)[..., None]
    roi = scene[y : y + h, x : x + w].astype(np.float32)
    scene[y : y + h, x : x + w] = (mask * patch + (1.0 - mask) * roi).astype(np.uint8)


@lru_cache(maxsize=1)
def demo_scene() -> np.ndarray:
    """Build the demo scene once.

    Returns
    -------
    (960, 1280, 3) uint8 ndarray
        BGR scene with seven faces of different sizes on a soft gradient.
    """
    from skimage import data  # imported lazily: only the demo needs it

    width, height = _SCENE_SIZE
    # A smooth gradient with mild noise: plain enough to add no false positives,
    # textured enough that the frame does not look synthetic.
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 90 + 60 * (xx / width) + 40 * (yy / height)
    noise = np.random.default_rng(0).normal(0.0, 4.0, (height, width)).astype(np.float32)
    gray = np.clip(base + noise, 0, 255)
    scene = np.stack([gray * 1.05, gray, gray * 0.9], axis=-1).clip(0, 255).astype(np.uint8)

    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    edge = (_ASTRONAUT_EDGE, _ASTRONAUT_EDGE)
    astronaut = cv2.resize(astronaut, edge, interpolation=cv2.INTER_AREA)
    _paste_feathered(scene, astronaut, *_ASTRONAUT_ORIGIN, feather=8.0)

    faces = data.lfw_subset()
    for index, edge, x, y in _LFW_FACES:
        face = (faces[index] * 255).astype(np.uint8)
        face = cv2.resize(face, (edge, edge), interpolation=cv2.INTER_CUBIC)
        _paste_feathered(scene, cv2.cvtColor(face, cv2.COLOR_GRAY2BGR), x, y, feather=edge / 25)
    scene.setflags(write=False)
    return scene


def _camera_pose(index: int) -> tuple[float, float, float]:
    """Zoom and top-left scene corner of the virtual camera for frame ``index``."""
    t = (index % DEMO_CYCLE_FRAMES) / DEMO_CYCLE_FRAMES
    lo, hi = _ZOOM_RANGE
    # Zoom and pan run at different whole-number frequencies so that the path
    # covers the scene and still closes on itself at the end of a cycle.
    zoom = lo + (hi - lo) * 0.5 * (1.0 - math.cos(2.0 * math.pi * t))
    out_w, out_h = DEMO_SIZE
    view_w, view_h = out_w / zoom, out_h / zoom
    scene_w, scene_h = _SCENE_SIZE
    px = 0.5 - 0.5 * math.cos(2.0 * math.pi * 2.0 * t)
    py = 0.5 + 0.5 * math.sin(2.0 * math.pi * 3.0 * t)
    return zoom, px * (scene_w - view_w), py * (scene_h - view_h)


def demo_frame(index: int) -> np.ndarray:
    """Render frame ``index`` of the demo clip.

    Parameters
    ----------
    index : int
        Frame number; the clip repeats every ``DEMO_CYCLE_FRAMES`` frames.

    Returns
    -------
    (480, 640, 3) uint8 ndarray
        BGR frame.
    """
    zoom, x0, y0 = _camera_pose(index)
    affine = np.array([[zoom, 0.0, -zoom * x0], [0.0, zoom, -zoom * y0]], np.float64)
    return cv2.warpAffine(
        demo_scene(), affine, DEMO_SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
