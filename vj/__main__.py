"""``vj`` / ``python -m vj``: the version, and the programs that come with it.

::

    vj --version          # vj-faces 0.1.0
    python -m vj --version
"""

from __future__ import annotations

import argparse
import sys

from . import __version__

__all__ = ["PROGRAMS", "main"]

#: The command-line programs installed with vj, and what each does.
PROGRAMS = {
    "vj-webcam": "live face detection on a camera, video, image folder or the built-in demo",
    "vj-detect": "detect faces in images, write the boxes as JSON",
    "vj-train-cascade": "train a Haar cascade (as opencv_traincascade did)",
    "vj-train-verifier": "train the neural face verifiers",
    "vj-bench": "benchmarks against a peer measured in the same run",
    "vj-models": "list the models and where they are; fetch OpenCV's Haar XMLs",
}


def _parser() -> argparse.ArgumentParser:
    epilog = "programs:\n" + "\n".join(f"  {n:18s} {what}" for n, what in PROGRAMS.items())
    parser = argparse.ArgumentParser(
        prog="vj", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog,
        description="Fast Viola-Jones face detection (Numba), OpenCV-exact, with cascade "
        "training and neural verification.")
    parser.add_argument("--version", action="version", version=f"vj-faces {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``vj`` with ``argv`` (default ``sys.argv[1:]``): ``--version``, or the help."""
    parser = _parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
