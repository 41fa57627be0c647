"""The OpenCV highgui window of ``vj-webcam`` and the check that one can be opened at all."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np

__all__ = ["KEY_ACTIONS", "Window", "window_problem"]

#: Key (as returned by ``cv2.waitKey`` & 0xFF) -> action name.
KEY_ACTIONS = {
    ord("q"): "quit",
    27: "quit",  # Esc
    ord("v"): "verify",
    ord("s"): "snapshot",
    ord("e"): "enrol",
    ord("+"): "bigger",
    ord("="): "bigger",  # the unshifted "+" key
    ord("-"): "smaller",
    ord("_"): "smaller",
}

_PROBE = "import cv2; cv2.namedWindow('probe'); cv2.waitKey(1); cv2.destroyAllWindows()"


def window_problem() -> str | None:
    """Why no window can be opened here, or ``None`` when one can.

    On Linux the check runs in a child process: OpenCV's Qt backend aborts the
    whole process when it cannot reach the display, which the app must survive.
    """
    if not sys.platform.startswith("linux"):
        return None
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        return "no display is available (DISPLAY is not set)"
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return "opening a test window did not finish within 20 seconds"
    if probe.returncode != 0:
        display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        return f"cannot open a window on display {display}"
    return None


class Window:
    """One highgui window showing annotated frames and reporting key presses.

    Parameters
    ----------
    title : str
        Window title; also OpenCV's handle for the window.
    """

    def __init__(self, title: str) -> None:
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
        self._shown = False

    def show(self, frame: np.ndarray) -> None:
        """Display ``frame``."""
        cv2.imshow(self.title, frame)
        self._shown = True

    def poll(self, delay_ms: int) -> str | None:
        """Wait up to ``delay_ms`` for a key; return its action, ``"quit"`` if closed, or None."""
        key = cv2.waitKey(max(1, delay_ms))
        if key != -1:
            return KEY_ACTIONS.get(key & 0xFF)
        if self._shown and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            return "quit"  # closed with the window's close button
        return None

    def close(self) -> None:
        """Close the window."""
        cv2.destroyWindow(self.title)
        cv2.waitKey(1)  # lets the GUI thread process the close
