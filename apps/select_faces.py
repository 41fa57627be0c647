"""List the frontal-enough faces of a WIDER-style crop folder, for cascade training.

A face is kept when one of OpenCV 4's frontal cascades (``default``, ``alt2``) or the
project's ``frontalface`` accepts a raw window on it, in the crop or in its
histogram-equalised version (:func:`vj.wider_faces.found_by`). Each kept crop's line
also gives the face's aligned window (:func:`vj.wider_faces.aligned_window`: the median
of the windows those cascades accept on it), which the trainer then cuts instead of the
window mapped from WIDER's loosely framed box. The list goes to
``vj-train-cascade --wider-keep``.

Usage::

    python -m vj_apps.select_faces --out runs/wider_frontal.txt [--crops DIR]
"""

from __future__ import annotations

import argparse
import sys

from vj.atomic import atomic_write_text
from vj.image_sources import resolve_data_dir

__all__ = ["SELECTORS", "main"]

#: The cascades that decide what counts as frontal.
SELECTORS = ("opencv:default", "opencv:alt2", "frontalface")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="select_faces", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="the list to write")
    p.add_argument("--crops", default=None, metavar="DIR",
                   help="crop folder (default: faces/wider_train of the shared data)")
    p.add_argument("--cascades", nargs="+", default=list(SELECTORS))
    p.add_argument("--no-equalize", action="store_true",
                   help="do not also try the histogram-equalised crops")
    p.add_argument("--no-align", action="store_true",
                   help="list the crops only, no aligned windows (faster: stops at the "
                   "first cascade that accepts a face)")
    args = p.parse_args(argv)
    from tqdm import tqdm

    import vj
    from vj.wider_faces import aligned_window, found_by, read_wider_faces

    try:
        root = args.crops or resolve_data_dir() / "faces" / "wider_train"
        faces = read_wider_faces(root)
        detectors = [vj.load(c) for c in args.cascades]
    except (ValueError, FileNotFoundError) as exc:
        print(f"select_faces: {exc}", file=sys.stderr)
        return 2
    kept = []
    for f in tqdm(faces, file=sys.stderr):
        if args.no_align:
            if found_by(f, detectors, equalize=not args.no_equalize):
                kept.append(f.relpath)
            continue
        window = aligned_window(f, detectors, equalize=not args.no_equalize)
        if window is not None:
            kept.append(f.relpath + "".join(f" {v:.2f}" for v in window))
    head = (f"# {len(kept)} of {len(faces)} crops of {root} that {', '.join(args.cascades)} "
            f"accept a raw window on{'' if args.no_equalize else ' (or on their equalised crop)'}"
            f"{'' if args.no_align else '; path, then the aligned window x y w h'}\n")
    atomic_write_text(args.out, head + "".join(f"{k}\n" for k in kept))
    print(f"select_faces: kept {len(kept)} of {len(faces)} -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
