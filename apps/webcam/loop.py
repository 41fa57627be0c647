"""The main loop of ``vj-webcam``: read a frame, detect, annotate, write and show; react to keys.

Detection runs here, on the main thread; a camera is read by its own thread (see
:class:`vj_apps.webcam.sources.CameraSource`), so the loop always gets the newest frame.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .detectors import DetectorSwitch
from .errors import EXIT_INTERRUPTED, WebcamError
from .output import JsonLinesWriter, RunSummary, VideoWriter
from .overlay import Hud, draw_detections, draw_hud, draw_names
from .recognition import Recognition
from .sources import FrameSource
from .window import Window

__all__ = ["MIN_SIZE_LIMITS", "MIN_SIZE_STEP", "Settings", "run"]

#: Change of the minimum face size per + / - key press, in pixels.
MIN_SIZE_STEP = 10
#: Range the + / - keys keep the minimum face size in.
MIN_SIZE_LIMITS = (20, 400)
_MESSAGE_SECONDS = 2.5
_FPS_FRAMES = 30


@dataclass
class Settings:
    """Detection parameters and run limits, as given on the command line."""

    scale_factor: float = 1.1
    #: None: each detector's own default (3 for the cascade alone, the verified
    #: pipeline's :data:`vj_dynamic.face.pipeline.MIN_NEIGHBORS`).
    min_neighbors: int | None = None
    min_size: int = 40
    max_frames: int | None = None
    snapshot_dir: Path = field(default_factory=Path.cwd)
    #: Name the ``e`` key enrols (None: the next free "person N").
    enrol_name: str | None = None


def _say(text: str) -> None:
    print(f"vj-webcam: {text}", file=sys.stderr, flush=True)


class _Loop:
    """State of one run; :meth:`step` handles one frame."""

    def __init__(
        self,
        source: FrameSource,
        detectors: DetectorSwitch,
        settings: Settings,
        window: Window | None,
        video: VideoWriter | None,
        jsonl: JsonLinesWriter | None,
        recognition: Recognition | None = None,
    ) -> None:
        self.source = source
        self.recognition = recognition
        self.detectors = detectors
        self.settings = settings
        self.window = window
        self.video = video
        self.jsonl = jsonl
        self.summary = RunSummary()
        self.hud = Hud(source.name, min_size=settings.min_size, verify=self._verify_state(),
                       keys=window is not None)
        self.message_until = 0.0
        self.recent: deque[float] = deque(maxlen=_FPS_FRAMES)
        # Files and the demo play at their own rate in a window; headless runs flat out.
        paced = window is not None and not source.live and source.fps
        self.frame_interval = 1.0 / source.fps if paced else 0.0
        self.quit = False

    def _verify_state(self) -> bool | None:
        return None if self.detectors.verifier is None else self.detectors.verify

    def _notify(self, text: str) -> None:
        self.hud.message = text
        self.message_until = time.monotonic() + _MESSAGE_SECONDS
        _say(text)

    def step(self, frame: np.ndarray, started: float) -> None:
        """Detect on ``frame``, annotate it, write outputs and update the window."""
        s = self.settings
        detector = self.detectors.active
        neighbours = {} if s.min_neighbors is None else {"min_neighbors": s.min_neighbors}
        boxes, scores = detector.detect(
            frame, scale_factor=s.scale_factor, min_size=s.min_size, return_scores=True,
            **neighbours,
        )
        boxes = np.asarray(boxes).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        stats = detector.last_stats

        if self.hud.message and time.monotonic() > self.message_until:
            self.hud.message = ""
        if len(self.recent) >= 2:
            self.hud.fps = (len(self.recent) - 1) / max(self.recent[-1] - self.recent[0], 1e-9)
        annotated = frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        # Boxes last, so that a face under the status panel stays visible.
        draw_hud(annotated, boxes, stats, self.hud)
        draw_detections(annotated, boxes, scores, stats)
        index = self.summary.frames
        names = self._recognise(frame, boxes, index)
        if names is not None:
            draw_names(annotated, boxes, names)

        if self.video is not None:
            self.video.write(annotated)
        if self.jsonl is not None:
            self.jsonl.write(index, boxes, scores, stats, self.source.frame_label, names)
        if self.window is not None:
            self.window.show(annotated)
            wait = self.frame_interval - (time.perf_counter() - started)
            self._act(self.window.poll(int(wait * 1000)), annotated, index)

        now = time.perf_counter()
        self.recent.append(now)
        self.summary.add(len(boxes), stats, now - started)

    def _recognise(self, frame: np.ndarray, boxes: np.ndarray, index: int) -> list[str] | None:
        """Feed a key-press enrolment, then name the faces (None: nobody enrolled)."""
        if self.recognition is None:
            return None
        message = self.recognition.feed(frame, boxes, index)
        if message:
            self._notify(message)
        return self.recognition.label(frame, boxes)

    def _act(self, action: str | None, annotated: np.ndarray, index: int) -> None:
        if action == "quit":
            self.quit = True
        elif action == "verify":
            self._notify(self.detectors.toggle())
            self.hud.verify = self._verify_state()
        elif action == "enrol":
            if self.recognition is None:
                self._notify("face recognition is not available")
            else:
                self._notify(self.recognition.start(self.settings.enrol_name))
        elif action == "snapshot":
            self._snapshot(annotated, index)
        elif action in ("bigger", "smaller"):
            step = MIN_SIZE_STEP if action == "bigger" else -MIN_SIZE_STEP
            lo, hi = MIN_SIZE_LIMITS
            self.settings.min_size = int(np.clip(self.settings.min_size + step, lo, hi))
            self.hud.min_size = self.settings.min_size
            self._notify(f"minimum face size {self.settings.min_size} px")

    def _snapshot(self, annotated: np.ndarray, index: int) -> None:
        folder = self.settings.snapshot_dir
        path = folder / f"vj-webcam-{time.strftime('%Y%m%d-%H%M%S')}-{index:06d}.png"
        if folder.is_dir() and cv2.imwrite(str(path), annotated):
            self._notify(f"saved snapshot {path}")
        else:
            self._notify(f"could not save a snapshot in {folder}")


def run(
    source: FrameSource,
    detectors: DetectorSwitch,
    settings: Settings,
    *,
    window: Window | None = None,
    video: VideoWriter | None = None,
    jsonl: JsonLinesWriter | None = None,
    report: Callable[[str], None] = print,
    recognition: Recognition | None = None,
) -> int:
    """Process frames until the source ends, ``max_frames``, a quit key, Ctrl-C or a lost camera.

    Outputs are always finished and the summary always reported, however the run ends.

    Parameters
    ----------
    source : FrameSource
    detectors : DetectorSwitch
    settings : Settings
        ``settings.min_size`` changes when + / - are pressed.
    window : Window, optional
        Show frames and react to keys; headless when ``None``.
    video, jsonl : optional
        Outputs to write every annotated frame / every frame's record to.
    report : callable
        Receives the summary text at the end.
    recognition : Recognition, optional
        Names the faces once anyone is enrolled; the ``e`` key enrols.

    Returns
    -------
    int
        0 when the run ended normally, 130 on Ctrl-C, else the ``exit_code`` of the
        :class:`~vj_apps.webcam.errors.WebcamError` that ended it (1 for a lost camera).
    """
    loop = _Loop(source, detectors, settings, window, video, jsonl, recognition)
    exit_code = 0
    try:
        while settings.max_frames is None or loop.summary.frames < settings.max_frames:
            started = time.perf_counter()
            frame = source.read()
            if frame is None:
                break
            loop.step(frame, started)
            if loop.quit:
                break
    except KeyboardInterrupt:
        _say("interrupted; finishing outputs")
        exit_code = EXIT_INTERRUPTED
    except WebcamError as error:  # a lost camera or an output that stopped working
        _say(f"error: {error}")
        exit_code = error.exit_code
    finally:
        source.close()
        for output in (video, jsonl, window):
            if output is not None:
                output.close()
    report(loop.summary.format(source.name, source.skipped))
    if video is not None:
        report(f"video: {video.path} ({video.frames} frames)")
    if jsonl is not None:
        report(f"json lines: {jsonl.path}")
    return exit_code
