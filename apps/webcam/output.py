"""Headless outputs of ``vj-webcam``: annotated video, per-frame JSON Lines, and the run summary."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from vj.stats import DetectionStats

from .errors import OutputError

__all__ = ["JsonLinesWriter", "RunSummary", "VideoWriter"]

# Codec per container: both ship with opencv-python's FFmpeg and re-open with OpenCV.
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
_MIN_EDGE = 16


class VideoWriter:
    """Write annotated frames to a video file; opened on the first frame, which sets the size.

    Frames of another size (image folders mix sizes) are letterboxed to the first size.

    Parameters
    ----------
    path : str or os.PathLike
        ``.mp4``/``.m4v``/``.mov`` (MPEG-4 Part 2) or ``.avi``/``.mkv`` (Motion JPEG).
    fps : float
        Frame rate stamped into the file.

    Raises
    ------
    OutputError
        For an unknown extension, or when the file cannot be created.
    """

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in _FOURCC:
            raise OutputError(
                f"cannot write video {self.path}: use one of {', '.join(sorted(_FOURCC))}"
            )
        if not self.path.parent.is_dir():
            raise OutputError(f"cannot write video {self.path}: folder does not exist")
        self.fps = fps
        self.frames = 0
        self._fourcc = cv2.VideoWriter_fourcc(*_FOURCC[suffix])
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, frame: np.ndarray) -> None:
        """Append one BGR frame."""
        if self._writer is None:
            # OpenCV's Motion-JPEG writer corrupts memory on frames a few pixels
            # across, so tiny frames are letterboxed into a minimum size.
            self._size = (max(frame.shape[1], _MIN_EDGE), max(frame.shape[0], _MIN_EDGE))
            self._writer = cv2.VideoWriter(str(self.path), self._fourcc, self.fps, self._size)
            if not self._writer.isOpened():
                raise OutputError(f"cannot write video {self.path}")
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = _letterbox(frame, self._size)
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        """Finish the file (writes the container index, so always call it)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None


def _letterbox(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    scale = min(width / frame.shape[1], height / frame.shape[0])
    w = max(1, round(frame.shape[1] * scale))
    h = max(1, round(frame.shape[0] * scale))
    out = np.zeros((height, width, 3), np.uint8)
    x, y = (width - w) // 2, (height - h) // 2
    out[y : y + h, x : x + w] = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    return out


class JsonLinesWriter:
    """Per-frame results as JSON Lines: one JSON object per line, flushed every frame.

    JSON Lines rather than one array, so an interrupted run still leaves a file
    every line of which parses. Each line is::

        {"frame": i, "boxes": [[x, y, w, h, score], ...], "ms": detection_ms,
         "proposed": n, "stages": [{"name": ..., "decided": ..., "ms": ...}, ...]}

    with ``"image": file_name`` added for image-folder sources, and ``"names"``, one
    per box (an enrolled name or ``"unknown"``), once anyone is enrolled. ``frame`` counts
    processed frames from 0, so it is also the frame's index in the written video.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self._file: TextIO = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as error:
            raise OutputError(f"cannot write {self.path}: {error.strerror}") from None

    def write(
        self,
        index: int,
        boxes: np.ndarray,
        scores: np.ndarray,
        stats: DetectionStats,
        label: str | None = None,
        names: list[str] | None = None,
    ) -> None:
        """Write one frame's record."""
        rows = zip(boxes, scores, strict=True)
        record: dict[str, object] = {
            "frame": index,
            "boxes": [[*map(int, box), round(float(score), 4)] for box, score in rows],
            "ms": round(stats.ms, 3),
            "proposed": stats.windows,
            "stages": [
                {"name": s.name, "decided": s.decided, "ms": round(s.ms, 3)}
                | ({} if s.flops is None else {"flops": s.flops})
                for s in stats.stages
            ],
        }
        if label is not None:
            record["image"] = label
        if names is not None:
            record["names"] = list(names)
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as error:
            raise OutputError(f"cannot write {self.path}: {error.strerror}") from None

    def close(self) -> None:
        """Close the file."""
        try:
            self._file.close()
        except OSError:
            pass  # the failed write was reported already; nothing more can be saved


class RunSummary:
    """Accumulates per-frame timings and counts; :meth:`format` gives the end-of-run report."""

    def __init__(self) -> None:
        self.frames = 0
        self.faces = 0
        self.frames_with_faces = 0
        self.frame_seconds: list[float] = []
        self.detect_ms: list[float] = []
        self.proposed = 0
        self.stage_decided: dict[str, int] = {}
        self.stage_ms: dict[str, float] = {}

    def add(self, n_boxes: int, stats: DetectionStats, frame_seconds: float | None) -> None:
        """Record one processed frame; ``frame_seconds`` is the whole loop iteration."""
        self.frames += 1
        self.faces += n_boxes
        self.frames_with_faces += n_boxes > 0
        if frame_seconds is not None and frame_seconds > 0:
            self.frame_seconds.append(frame_seconds)
        self.detect_ms.append(stats.ms)
        self.proposed += stats.windows or 0
        for stage in stats.stages:
            self.stage_decided[stage.name] = self.stage_decided.get(stage.name, 0) + stage.decided
            self.stage_ms[stage.name] = self.stage_ms.get(stage.name, 0.0) + stage.ms

    @property
    def median_fps(self) -> float:
        """Frames per second from the median loop iteration (0 before any frame)."""
        if not self.frame_seconds:
            return 0.0
        return 1.0 / statistics.median(self.frame_seconds)

    def format(self, source: str, skipped: int) -> str:
        """The summary printed at the end of a run."""
        median_ms = statistics.median(self.detect_ms) if self.detect_ms else 0.0
        lines = [
            f"source: {source}",
            f"frames: {self.frames} processed, {skipped} unreadable skipped",
            f"median FPS: {self.median_fps:.1f} (median detection {median_ms:.1f} ms)",
            f"faces: {self.faces} in {self.frames_with_faces} frames",
            f"proposed: {self.proposed}",
        ]
        for name, decided in self.stage_decided.items():
            mean_ms = self.stage_ms[name] / max(self.frames, 1)
            lines.append(f"  {name}: decided {decided}, {mean_ms:.1f} ms per frame")
        return "\n".join(lines)
