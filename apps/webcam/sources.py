"""Frame sources for ``vj-webcam``: camera, video file, image folder and the built-in demo.

Every source has the same small interface (:class:`FrameSource`): ``read()`` returns
the next BGR frame or ``None`` at the end, ``skipped`` counts unreadable frames, and
``live`` tells whether frames are dropped (a camera) or queued (files, demo).

A camera is read in its own thread that always keeps only the newest frame, so a
slow detection step drops frames instead of falling further and further behind.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .demo import DEMO_CYCLE_FRAMES, DEMO_FPS, demo_frame
from .errors import CameraUnavailable, SourceError, SourceLost

__all__ = [
    "IMAGE_EXTENSIONS",
    "RECONNECT_ATTEMPTS",
    "RECONNECT_DELAY",
    "CameraSource",
    "DemoSource",
    "FrameSource",
    "ImageFolderSource",
    "VideoFileSource",
    "open_source",
]

IMAGE_EXTENSIONS = frozenset(
    {".bmp", ".jpeg", ".jpg", ".jp2", ".pbm", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"}
)
_CAMERA_SIZE = (640, 480)
#: Times a lost camera is reopened before the run ends.
RECONNECT_ATTEMPTS = 3
#: Seconds before each reopen: long enough for a replugged camera to enumerate.
RECONNECT_DELAY = 1.0


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log while probing devices and files.

    Opening a missing camera makes several backends print warnings; the app
    reports the failure itself, in one line.
    """
    logging = cv2.utils.logging
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(previous)


class FrameSource:
    """Base class: a stream of BGR uint8 frames.

    Attributes
    ----------
    name : str
        Human-readable description, shown in the window and the summary.
    fps : float or None
        Nominal frame rate, used to pace playback in a window and to stamp videos.
    live : bool
        True when frames arrive in real time and are dropped if not consumed.
    skipped : int
        Frames that could not be read or decoded and were skipped.
    """

    name = "source"
    fps: float | None = None
    live = False

    def __init__(self) -> None:
        self.skipped = 0
        self.frame_label: str | None = None

    def read(self) -> np.ndarray | None:
        """Return the next frame, or ``None`` when the source has ended."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the underlying device or file."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DemoSource(FrameSource):
    """The built-in demo clip (see :mod:`vj_apps.webcam.demo`).

    Parameters
    ----------
    loop : bool
        Repeat forever (window mode) instead of ending after one cycle.
    """

    name = "demo"
    fps = DEMO_FPS

    def __init__(self, loop: bool = False) -> None:
        super().__init__()
        self.loop = loop
        self._index = 0

    def read(self) -> np.ndarray | None:
        if not self.loop and self._index >= DEMO_CYCLE_FRAMES:
            return None
        frame = demo_frame(self._index)
        self._index += 1
        return frame


class ImageFolderSource(FrameSource):
    """The images of a folder (or a single image), in name order.

    Files that cannot be decoded are skipped and counted.
    """

    # Two images a second: long enough to look at each one in the window and in
    # a written video, where 30 would flash them by.
    fps = 2.0

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
                raise SourceError(f"no images in folder {path} (looked for {extensions})")
        else:
            files = [path]
        self.name = str(path)
        self._files = iter(files)

    def read(self) -> np.ndarray | None:
        for file in self._files:
            frame = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if frame is None:
                self.skipped += 1
                continue
            self.frame_label = file.name
            return frame
        return None


class VideoFileSource(FrameSource):
    """A video file, read frame by frame without dropping any."""

    # Consecutive failed reads before a file with frames left is taken as ended.
    _MAX_CONSECUTIVE_FAILURES = 25

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        with _quiet_opencv():
            capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise SourceError(f"cannot open {path} as a video (unknown format or not a video)")
        self.name = str(path)
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else None
        self._frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self._capture = capture

    def read(self) -> np.ndarray | None:
        failures = 0
        while True:
            ok, frame = self._capture.read()
            if ok and frame is not None and frame.size:
                return frame
            position = int(self._capture.get(cv2.CAP_PROP_POS_FRAMES))
            # A failed read before the known end is a damaged frame, not the end.
            if position >= self._frame_count - 1 or failures >= self._MAX_CONSECUTIVE_FAILURES:
                return None
            failures += 1
            self.skipped += 1
            self._capture.grab()

    def close(self) -> None:
        self._capture.release()


class CameraSource(FrameSource):
    """A camera read in a background thread that keeps only the newest frame.

    Parameters
    ----------
    index : int
        Camera index as OpenCV numbers them.
    size : (int, int)
        Requested capture size (width, height); the camera may choose another.
    reconnect_attempts : int, optional
        How many times to reopen the camera after it stops delivering frames
        (default ``RECONNECT_ATTEMPTS``).
    reconnect_delay : float, optional
        Seconds to wait before each reopen (default ``RECONNECT_DELAY``).
    stall_timeout : float
        Seconds without any frame after which the camera is taken as stalled.
    open_capture : callable, optional
        ``open_capture(index)`` returns an object with ``isOpened``, ``read``,
        ``set`` and ``release`` like ``cv2.VideoCapture`` (the default); tests
        pass a fake camera here.

    Raises
    ------
    CameraUnavailable
        When the camera cannot be opened at all.
    """

    live = True
    # Failed reads in a row before the camera is taken as gone and reopened.
    _FAILURES_BEFORE_RECONNECT = 5

    def __init__(
        self,
        index: int,
        *,
        size: tuple[int, int] = _CAMERA_SIZE,
        reconnect_attempts: int | None = None,
        reconnect_delay: float | None = None,
        stall_timeout: float = 5.0,
        open_capture: Callable[[int], Any] | None = None,
    ) -> None:
        super().__init__()
        self.index = index
        self.name = f"camera {index}"
        self.size = size
        self.reconnect_attempts = (
            RECONNECT_ATTEMPTS if reconnect_attempts is None else reconnect_attempts
        )
        self.reconnect_delay = RECONNECT_DELAY if reconnect_delay is None else reconnect_delay
        self.stall_timeout = stall_timeout
        self.reconnects = 0
        self._open_capture = open_capture or cv2.VideoCapture
        capture = self._open()
        if capture is None:
            raise CameraUnavailable(f"could not open camera {index}")
        fps = capture.get(cv2.CAP_PROP_FPS) if hasattr(capture, "get") else 0.0
        self.fps = fps if 0 < fps < 1000 else None
        self._capture = capture
        self._condition = threading.Condition()
        self._latest: np.ndarray | None = None
        self._sequence = 0
        self._consumed = 0
        self._lost_reason: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{index}", daemon=True)
        self._thread.start()

    def _open(self) -> Any | None:
        with _quiet_opencv():
            capture = self._open_capture(self.index)
        if not capture.isOpened():
            capture.release()
            return None
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        return capture

    def _reconnect(self) -> bool:
        self._capture.release()
        for _ in range(self.reconnect_attempts):
            if self._stop.wait(self.reconnect_delay):
                return False
            self.reconnects += 1
            capture = self._open()
            if capture is not None:
                self._capture = capture
                return True
        return False

    def _run(self) -> None:
        try:
            self._capture_frames()
        except Exception as error:  # any failure ends the camera; the reader must hear why
            reason = f"{self.name} failed: {error}"
        else:
            reason = (
                f"{self.name} stopped delivering frames and did not come back after "
                f"{self.reconnect_attempts} reconnect attempts"
            )
        with self._condition:
            if not self._stop.is_set():
                self._lost_reason = reason
            self._condition.notify_all()

    def _capture_frames(self) -> None:
        failures = 0
        while not self._stop.is_set():
            ok, frame = self._capture.read()
            if ok and frame is not None and frame.size:
                failures = 0
                with self._condition:
                    self._latest = frame
                    self._sequence += 1
                    self._condition.notify_all()
                continue
            failures += 1
            self.skipped += 1
            if failures < self._FAILURES_BEFORE_RECONNECT:
                continue
            if self._stop.is_set() or not self._reconnect():
                return
            failures = 0

    def read(self) -> np.ndarray | None:
        """Return the newest frame not returned before, waiting for one if needed.

        Raises
        ------
        SourceLost
            When the camera is gone for good or delivers nothing for ``stall_timeout``.
        """
        deadline = time.monotonic() + self.stall_timeout
        with self._condition:
            while self._sequence == self._consumed and self._lost_reason is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SourceLost(
                        f"{self.name} delivered no frame for {self.stall_timeout:g} seconds"
                    )
                self._condition.wait(remaining)
            if self._sequence == self._consumed:
                raise SourceLost(self._lost_reason)
            self._consumed = self._sequence
            return self._latest

    def close(self) -> None:
        self._stop.set()
        # The thread may sit in a blocking read; it is a daemon, so do not wait long.
        self._thread.join(timeout=2.0)
        if not self._thread.is_alive():
            self._capture.release()


def open_source(spec: str | None, *, loop_demo: bool) -> tuple[FrameSource, str | None]:
    """Open the source named on the command line.

    Parameters
    ----------
    spec : str or None
        A camera index (``"0"``, ``"1"``, ...), ``"demo"``, a video file, an image
        file or a folder of images. ``None`` means camera 0, falling back to the demo
        when no camera can be opened.
    loop_demo : bool
        Whether the demo repeats forever (window) or ends after one cycle.

    Returns
    -------
    source : FrameSource
    notice : str or None
        A line to show the user when the default camera was replaced by the demo.

    Raises
    ------
    SourceError
        For an explicit source that does not exist or cannot be opened.
    """
    if spec is None:
        try:
            return CameraSource(0), None
        except CameraUnavailable:
            notice = "no camera could be opened (camera 0); running the built-in demo instead"
            return DemoSource(loop=loop_demo), notice
    if spec == "demo":
        return DemoSource(loop=loop_demo), None
    if spec.isdigit():
        return CameraSource(int(spec)), None
    path = Path(spec)
    if path.is_dir() or (path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS):
        return ImageFolderSource(path), None
    if path.is_file():
        return VideoFileSource(path), None
    raise SourceError(
        f"no such file or folder: {spec} "
        "(expected a camera index, 'demo', a video file or a folder of images)"
    )
