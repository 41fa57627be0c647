"""``vj-detect``: detect faces (or any cascade's objects) in images, write JSON Lines / JSON.

Results stream to a JSON Lines file as the work goes (``--jsonl``; one
``{"image": ..., "boxes": [[x, y, w, h, score], ...]}`` per line, unreadable images as
``{"image": ..., "error": ...}``), and ``--json`` converts them to the single JSON
``{"<image>": [[x, y, w, h, score], ...]}`` at the end. ``--resume`` continues a killed
run; ``--workers N`` / ``--scheduler ADDRESS`` run on a Dask cluster (``vj.batch``).

Examples
--------
::

    vj-detect photos/ --json faces.json
    vj-detect a.jpg b.png --json out.json --cascade opencv:alt2 --draw annotated/
    vj-detect photos/ --json faces.json --verify      # cascade + neural verifiers
    vj-detect archive/ --jsonl faces.jsonl --workers 8 [--resume]
    vj-detect archive/ --jsonl faces.jsonl --scheduler tcp://scheduler:8786 --resume
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from tqdm import tqdm

import vj
from vj.batch import (
    PARTITION_SIZE,
    DetectionSettings,
    SchedulerUnreachableError,
    detect_files,
    iter_images,
)
from vj.batch_output import jsonl_to_json
from vj.image_sources import IMAGE_SUFFIXES
from vj.models import DEFAULT_MODEL, load_default_cascade

__all__ = ["IMAGE_SUFFIXES", "build_parser", "collect_images", "main", "parse_size"]

DEFAULT_CASCADE = DEFAULT_MODEL


def parse_size(text: str) -> tuple[int, int]:
    """``"40"`` or ``"40x30"`` -> ``(40, 40)`` / ``(40, 30)``."""
    try:
        parts = [int(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or WxH, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 0:
        raise argparse.ArgumentTypeError(f"expected N or WxH with N >= 0, got {text!r}")
    return parts[0], parts[1]


def collect_images(inputs: list[str]) -> list[tuple[Path, str]]:
    """(file, JSON key) pairs: directories are searched recursively for images.

    A file inside a directory argument is keyed by its path relative to that
    directory; a file argument by the path exactly as given (:func:`vj.batch.iter_images`).
    """
    return [(Path(p), key) for p, key in iter_images(inputs)]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``vj-detect``."""
    p = argparse.ArgumentParser(
        prog="vj-detect", description="Detect faces in images; write the boxes as JSON Lines "
        "(streamed, resumable) and/or JSON."
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGES_OR_DIRS")
    p.add_argument("--json", metavar="OUT",
                   help='single JSON at the end: {"<image>": [[x, y, w, h, score], ...], ...}')
    p.add_argument("--jsonl", metavar="OUT",
                   help='JSON Lines, appended as work finishes: {"image": ..., "boxes": [...]} '
                   'or {"image": ..., "error": ...} per line')
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run: skip the images already in the output")
    p.add_argument("--cascade", default=None, metavar="NAME|PATH",
                   help=f"built-in name ({', '.join(sorted(vj.BUILTIN))}), an OpenCV Haar XML "
                   f"or an own model file (default: {DEFAULT_CASCADE})")
    p.add_argument("--scale-factor", type=float, default=1.1)
    p.add_argument("--min-neighbors", type=int, default=None,
                   help="overlapping windows a face needs (default: 3; with --verify, the "
                   "pipeline's own: 1, chosen on real photographs)")
    p.add_argument("--min-size", type=parse_size, default=None, metavar="N|WxH")
    p.add_argument("--max-size", type=parse_size, default=None, metavar="N|WxH")
    p.add_argument("--draw", metavar="DIR", help="also write annotated copies here")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=False,
                   help="check the cascade's windows with the built-in neural verifiers "
                   "(vj_dynamic.face.pipeline); scores become the verified windows' evidence")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help="run on an embedded Dask LocalCluster of N processes "
                       "(needs the dask extra)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on a Dask cluster, e.g. tcp://scheduler:8786")
    p.add_argument("--partition-size", type=int, default=PARTITION_SIZE, metavar="N",
                   help=f"images per task and per flush of the output (default {PARTITION_SIZE})")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bar with images/s on stderr")
    return p


def _cascade(name: str | None) -> vj.Cascade:
    if name is not None:
        return vj.load_cascade(name)
    model, _, notice = load_default_cascade()
    if notice:
        print(f"vj-detect: {notice}", file=sys.stderr)
    return model


def _report_errors(records: list[dict]) -> None:
    for r in records:
        if "error" in r:
            tqdm.write(f"vj-detect: skipping unreadable image {r['image']}: {r['error']}",
                       file=sys.stderr)
        elif "warning" in r:
            tqdm.write(f"vj-detect: {r['image']}: {r['warning']}", file=sys.stderr)


def _min_neighbors(args: argparse.Namespace) -> int:
    """``--min-neighbors``, or the default of the cascade alone or of the verified pipeline."""
    if args.min_neighbors is not None:
        return args.min_neighbors
    if args.verify:
        from vj_dynamic.face.pipeline import MIN_NEIGHBORS

        return MIN_NEIGHBORS
    return 3


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.json is None and args.jsonl is None:
        p.error("give --jsonl OUT and/or --json OUT")
    # Without --jsonl the JSON Lines are a scratch file beside the JSON, kept only
    # while the run is unfinished (so that --resume can continue it).
    stream = args.jsonl or f"{args.json}.partial.jsonl"
    try:
        settings = DetectionSettings(args.scale_factor, _min_neighbors(args), args.min_size,
                                     args.max_size)
        cascade = _cascade(args.cascade)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the fallback notice is printed
            summary = detect_files(
                iter_images(args.inputs), stream, cascade=cascade, settings=settings,
                verify=args.verify, workers=args.workers, scheduler=args.scheduler,
                resume=args.resume, overwrite=args.jsonl is None,
                partition_size=args.partition_size, draw_dir=args.draw,
                progress=args.progress, on_partition=_report_errors)
    except (FileNotFoundError, ValueError, ModuleNotFoundError,
            SchedulerUnreachableError) as exc:
        print(f"vj-detect: {exc}", file=sys.stderr)
        return 2
    line = (f"vj-detect: {summary.images} images ({summary.images_per_s:.1f}/s), "
            f"{summary.boxes} detections, {summary.errors} unreadable")
    if summary.skipped:
        line += f", {summary.skipped} already done"
    if args.json is not None:
        counts = jsonl_to_json(stream, args.json)
        if args.jsonl is None:
            os.unlink(stream)
        line += f" -> {args.json} ({counts['images']} images)"
        readable = counts["images"]
    else:
        line += f" -> {args.jsonl}"
        readable = summary.images - summary.errors + summary.skipped
    print(line, file=sys.stderr)
    return 0 if readable or not (summary.images + summary.skipped) else 1


if __name__ == "__main__":
    raise SystemExit(main())
