"""Drawing on frames: detection boxes coloured by the stage that decided them, and a status panel.

The first stage's colour is pure green, drawn without anti-aliasing, so tests (and
people) can find boxes by colour in a screenshot; anti-aliased text never produces
that exact colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vj.stats import DetectionStats

__all__ = ["STAGE_COLOURS", "Hud", "draw_detections", "draw_hud", "draw_names", "stage_colour"]

#: BGR colour per stage index: cascade green, then verifier stages.
STAGE_COLOURS = (
    (0, 255, 0),
    (255, 191, 0),
    (0, 165, 255),
    (255, 0, 255),
    (0, 255, 255),
)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT_SCALE = 0.45
_LINE_HEIGHT = 17
_WHITE = (255, 255, 255)
_KEYS = "q/Esc quit  v verify  s snapshot  e enrol  +/- min size"


def stage_colour(index: int) -> tuple[int, int, int]:
    """The BGR colour of stage ``index``."""
    return STAGE_COLOURS[index % len(STAGE_COLOURS)]


def _count(n: int | None) -> str:
    if n is None:
        return "?"
    if n >= 10_000:
        return f"{n / 1000:.1f}k"
    return str(n)


def draw_detections(
    frame: np.ndarray, boxes: np.ndarray, scores: np.ndarray, stats: DetectionStats
) -> None:
    """Draw each box in its deciding stage's colour, with its score, onto ``frame``.

    Parameters
    ----------
    frame : (H, W, 3) uint8 ndarray
        Modified in place.
    boxes : (N, 4) int ndarray of ``x, y, w, h``
    scores : (N,) float ndarray
    stats : DetectionStats
        Supplies ``box_stage``, the deciding stage of each box.
    """
    for (x, y, w, h), score, stage in zip(boxes, scores, stats.box_stage, strict=True):
        colour = stage_colour(int(stage))
        cv2.rectangle(frame, (int(x), int(y)), (int(x + w - 1), int(y + h - 1)), colour, 2,
                      cv2.LINE_8)
        label = f"{score:.0f}" if float(score).is_integer() else f"{score:.2f}"
        cv2.putText(frame, label, (int(x) + 3, max(int(y) - 5, 12)), _FONT, _TEXT_SCALE, colour, 1,
                    cv2.LINE_AA)


def draw_names(frame: np.ndarray, boxes: np.ndarray, names: list[str]) -> None:
    """Write each face's name (or "unknown") under its box, white on a dark strip."""
    for (x, y, _, h), name in zip(boxes, names, strict=True):
        (tw, th), _ = cv2.getTextSize(name, _FONT, _TEXT_SCALE, 1)
        top = min(int(y + h) + 2, frame.shape[0] - th - 6)
        left = max(int(x), 0)
        strip = frame[max(top, 0):top + th + 6, left:left + tw + 6]
        strip[...] = (strip * 0.35).astype(np.uint8)
        cv2.putText(frame, name, (left + 3, top + th + 2), _FONT, _TEXT_SCALE, _WHITE, 1,
                    cv2.LINE_AA)


@dataclass
class Hud:
    """What the status panel shows besides the frame's statistics.

    Attributes
    ----------
    source : str
        Source description.
    fps : float
        Frames per second over the last few frames.
    min_size : int
        Current minimum face size in pixels.
    verify : bool or None
        Neural verification on or off; ``None`` when it is not available.
    message : str
        A transient line (snapshot saved, toggles, ...), empty for none.
    keys : bool
        Show the key help (only useful in a window).
    """

    source: str
    fps: float = 0.0
    min_size: int = 0
    verify: bool | None = None
    message: str = ""
    keys: bool = True


def draw_hud(frame: np.ndarray, boxes: np.ndarray, stats: DetectionStats, hud: Hud) -> None:
    """Draw the status panel (FPS, settings, per-stage statistics, keys) onto ``frame``."""
    verify = "n/a" if hud.verify is None else ("on" if hud.verify else "off")
    lines: list[tuple[str, tuple[int, int, int] | None]] = [
        (f"{hud.source}  {frame.shape[1]}x{frame.shape[0]}", None),
        (f"FPS {hud.fps:5.1f}   detect {stats.ms:6.1f} ms   faces {len(boxes)}", None),
        (f"min size {hud.min_size} px   verify {verify}", None),
        (f"proposed {_count(stats.windows)}", None),
    ]
    for i, stage in enumerate(stats.stages):
        flops = "" if stage.flops is None else f"  {stage.flops / 1e6:.1f} MFLOP"
        text = f"{stage.name}: decided {_count(stage.decided)}  {stage.ms:.1f} ms{flops}"
        lines.append((text, stage_colour(i)))
    if hud.keys:
        lines.append((_KEYS, None))
    if hud.message:
        lines.append((hud.message, None))

    width = 12 + max(cv2.getTextSize(t, _FONT, _TEXT_SCALE, 1)[0][0] + (16 if c else 0)
                     for t, c in lines)
    height = 8 + _LINE_HEIGHT * len(lines)
    width, height = min(width, frame.shape[1]), min(height, frame.shape[0])
    # A translucent dark panel keeps the text readable on any background.
    panel = frame[:height, :width]
    panel[...] = (panel * 0.35).astype(np.uint8)
    for row, (text, colour) in enumerate(lines):
        y = 4 + _LINE_HEIGHT * (row + 1) - 4
        x = 6
        if colour is not None:
            cv2.rectangle(frame, (x, y - 9), (x + 9, y), colour, cv2.FILLED)
            x += 16
        cv2.putText(frame, text, (x, y), _FONT, _TEXT_SCALE, _WHITE, 1, cv2.LINE_AA)
