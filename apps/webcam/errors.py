"""Expected failures of ``vj-webcam``: each carries a message for the user and an exit code.

The CLI prints ``vj-webcam: error: <message>`` and exits with ``exit_code``; no
traceback is shown for anything raised as a :class:`WebcamError`.
"""

from __future__ import annotations

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "CameraUnavailable",
    "OutputError",
    "SourceError",
    "SourceLost",
    "VerifierUnavailable",
    "WebcamError",
]

#: A run that was set up correctly but failed while running (a camera that was lost).
EXIT_RUNTIME = 1
#: Something the user asked for cannot be done (bad source, cascade, output, option).
EXIT_USAGE = 2
#: Ended by Ctrl-C (or SIGTERM); outputs are still finished and a summary printed.
EXIT_INTERRUPTED = 130


class WebcamError(Exception):
    """An expected failure, reported as a one-line message and a non-zero exit code."""

    exit_code = EXIT_USAGE


class SourceError(WebcamError):
    """The requested frame source does not exist or cannot be read."""


class CameraUnavailable(SourceError):
    """No camera could be opened at the requested index."""


class SourceLost(WebcamError):
    """A live source stopped delivering frames and did not come back."""

    exit_code = EXIT_RUNTIME


class OutputError(WebcamError):
    """An output file cannot be written."""


class VerifierUnavailable(WebcamError):
    """Neural verification was requested but cannot be loaded."""
