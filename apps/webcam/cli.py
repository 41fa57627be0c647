"""``vj-webcam``: live face detection on a camera, a video, an image folder or the built-in demo.

Shows the annotated frames in a window, or runs headless and writes an annotated
video and/or per-frame JSON Lines. The pieces live in ``apps/webcam_*.py``:
sources, detectors, overlay, outputs, window and the main loop.

Examples
--------
::

    vj-webcam                                  # camera 0, or the demo if there is none
    vj-webcam --source demo --no-window --output demo.mp4 --json demo.jsonl
    vj-webcam --source holiday.mp4 --cascade opencv:alt2 --min-size 30
    vj-webcam --enrol ada=photos/ada           # enrol, then label faces ada / unknown
    vj-webcam --list-enrolled                  # or --forget ada
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .detectors import DetectorSwitch, load_cascade, load_verifier
from .errors import EXIT_INTERRUPTED, VerifierUnavailable, WebcamError
from .loop import Settings, run
from .output import JsonLinesWriter, VideoWriter
from .recognition import add_enrolment_options, manage_enrolments, recognition_for
from .sources import open_source
from .window import Window, window_problem

__all__ = ["build_parser", "main"]

_DEFAULT_FPS = 30.0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _scale_factor(text: str) -> float:
    value = float(text)
    if not value > 1.0:
        raise argparse.ArgumentTypeError(f"must be greater than 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``vj-webcam``."""
    parser = argparse.ArgumentParser(
        prog="vj-webcam",
        description="Face detection on a camera, a video, an image folder or a built-in demo.",
        epilog=(
            "Window keys: q/Esc quit, v toggle neural verification, s save a snapshot, "
            "e enrol the largest face, +/- change the minimum face size. "
            "Exit codes: 0 done, 1 camera lost, 2 bad arguments or input, 130 interrupted."
        ),
    )
    parser.add_argument(
        "--source",
        metavar="0|N|VIDEO|IMAGE_DIR|demo",
        help="camera index, video file, image or folder of images, or 'demo' "
        "(default: camera 0, or the demo when no camera opens)",
    )
    parser.add_argument(
        "--cascade",
        metavar="NAME|PATH",
        help="built-in name (frontalface, opencv:default, opencv:alt, opencv:alt2), "
        "OpenCV Haar XML or own model file (default: frontalface)",
    )
    parser.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="neural verification of the cascade's detections (default: on when available)",
    )
    parser.add_argument("--scale-factor", type=_scale_factor, default=1.2,
                        help="image pyramid step (default: %(default)s, real-time at 640x480)")
    parser.add_argument("--min-neighbors", type=_non_negative_int, default=None,
                        help="overlapping detections a face needs (default: 3 for the "
                        "cascade alone, 1 verified: chosen on real photographs)")
    parser.add_argument("--min-size", type=_positive_int, default=64, metavar="PIXELS",
                        help="smallest face to look for (default: %(default)s; a face at a "
                        "laptop's webcam 1.4 m away is about 64 px, and 64 keeps 640x480 verified "
                        "detection above 50 frames/s)")
    parser.add_argument("--no-window", action="store_true",
                        help="run headless: no window, print a summary at the end")
    parser.add_argument("--output", type=Path, metavar="VIDEO",
                        help="write the annotated frames to VIDEO (.mp4 or .avi)")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="write per-frame results to PATH as JSON Lines")
    parser.add_argument("--max-frames", type=_positive_int, metavar="N",
                        help="stop after N frames")
    parser.add_argument("--snapshot-dir", type=Path, default=Path("."), metavar="DIR",
                        help="folder for snapshots saved with the s key (default: current)")
    add_enrolment_options(parser)
    return parser


def _say(text: str) -> None:
    print(f"vj-webcam: {text}", file=sys.stderr, flush=True)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # Handled like Ctrl-C so that outputs are finished the same way.
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    managed = manage_enrolments(args)  # --list-enrolled / --forget: no camera needed
    if managed is not None:
        return managed
    headless = args.no_window
    if not headless:
        problem = window_problem()
        if problem is not None:
            _say(f"{problem}; running headless (pass --no-window to skip this check)")
            headless = True

    cascade, _, notice = load_cascade(args.cascade)
    if notice:
        _say(notice)
    verifier = None
    if args.verify is not False:
        try:
            verifier = load_verifier(cascade)
        except VerifierUnavailable as error:
            if args.verify:
                raise VerifierUnavailable(
                    f"{error} (--no-verify runs the cascade alone)") from None
            _say(f"{error}; running the cascade alone")
    detectors = DetectorSwitch(cascade, verifier, verify=args.verify is not False)
    detectors.warmup()
    recognition = recognition_for(args, cascade)

    source, notice = open_source(args.source, loop_demo=not headless)
    if notice:
        _say(notice)
    video = jsonl = window = None
    try:
        if args.output is not None:
            video = VideoWriter(args.output, fps=source.fps or _DEFAULT_FPS)
        if args.json is not None:
            jsonl = JsonLinesWriter(args.json)
        if not headless:
            window = Window("vj-webcam")
    except BaseException:
        source.close()
        raise
    if headless and source.live and args.max_frames is None:
        _say(f"running headless on {source.name}; press Ctrl-C to stop")
    settings = Settings(
        scale_factor=args.scale_factor,
        min_neighbors=args.min_neighbors,
        min_size=args.min_size,
        max_frames=args.max_frames,
        snapshot_dir=args.snapshot_dir,
        enrol_name=args.enrol_name,
    )
    return run(source, detectors, settings, window=window, video=video, jsonl=jsonl,
               recognition=recognition)


def main(argv: list[str] | None = None) -> int:
    """Run ``vj-webcam`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    args = build_parser().parse_args(argv)
    # Signal handlers can only be installed from the main thread.
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM)
    if on_main:
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        return _run(args)
    except WebcamError as error:
        print(f"vj-webcam: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
