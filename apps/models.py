"""``vj-models``: the built-in models and where they are found; fetch OpenCV's Haar XMLs.

Examples
--------
::

    vj-models list                   # every built-in name, its file and where it is
    vj-models fetch opencv           # OpenCV's 17 Haar XMLs into the model cache
    vj-models fetch opencv --url file:///opt/opencv/data/haarcascades/

The XMLs come from OpenCV's GitHub repository at a pinned release tag and are stored
in ``$VJ_HOME/opencv`` (default: ``~/.cache/vj/opencv``) after their SHA-256 checked
out; see :mod:`vj.model_cache`. OpenCV 4 users need no fetch: ``opencv:*`` names are
found in the OpenCV install.
"""

from __future__ import annotations

import argparse
import sys

from vj.model_cache import (
    OPENCV_CASCADES,
    OPENCV_TAG,
    OPENCV_URL,
    FetchError,
    fetch_opencv,
    opencv_cache_dir,
)
from vj.models import BUILTIN, resolve

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``vj-models``."""
    parser = argparse.ArgumentParser(
        prog="vj-models", description="List the built-in models; fetch OpenCV's Haar XMLs.",
        epilog="Exit codes: 0 done, 1 a fetch failed (nothing unverified is stored), "
        "2 bad arguments.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,fetch}")
    show = sub.add_parser("list", help="every built-in model name and the file it loads")
    show.add_argument("--missing", action="store_true", help="only the names not found")
    fetch = sub.add_parser(
        "fetch", help=f"download OpenCV {OPENCV_TAG}'s Haar XMLs into the model cache")
    fetch.add_argument("what", choices=["opencv"], help="what to fetch")
    fetch.add_argument("names", nargs="*", metavar="NAME",
                       help=f"only these cascades (default: all {len(OPENCV_CASCADES)}): "
                       f"{', '.join(OPENCV_CASCADES)}")
    fetch.add_argument("--url", default=OPENCV_URL,
                       help="folder to download from (default: %(default)s)")
    fetch.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                       help="per connection and read (default: %(default)s)")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _list(only_missing: bool) -> int:
    for name in BUILTIN:
        try:
            where = str(resolve(name))
        except (FileNotFoundError, ValueError) as error:
            where = f"missing: {error}"
        else:
            if only_missing:
                continue
        print(f"{name:36s} {where}")
    print(f"model cache: {opencv_cache_dir()}", file=sys.stderr)
    return 0


def _fetch(args: argparse.Namespace) -> int:
    unknown = [n.removeprefix("opencv:") for n in args.names
               if n.removeprefix("opencv:") not in OPENCV_CASCADES]
    if unknown:
        print(f"vj-models: unknown OpenCV cascades {', '.join(unknown)}; choose from "
              f"{', '.join(OPENCV_CASCADES)}", file=sys.stderr)
        return 2
    names = [n.removeprefix("opencv:") for n in args.names] or None
    try:
        status = fetch_opencv(names, base_url=args.url, timeout=args.timeout,
                              progress=not args.quiet)
    except FetchError as error:
        for line in error.problems:
            print(f"vj-models: {line}", file=sys.stderr)
        print(f"vj-models: {len(error.problems)} file(s) not stored; check the network or "
              "--url and run `vj-models fetch opencv` again", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"vj-models: {error}", file=sys.stderr)
        return 2
    fetched = sum(s == "fetched" for s in status.values())
    print(f"vj-models: {fetched} fetched, {len(status) - fetched} already present, all "
          f"verified, in {opencv_cache_dir()}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``vj-models`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "list":
        return _list(args.missing)
    return _fetch(args)


if __name__ == "__main__":
    raise SystemExit(main())
