"""Real-photo evaluation: detection rate against false positives on annotated photographs.

Runs the project's detectors and OpenCV 4's frontal-face cascades (through ``vj``,
which detects exactly as OpenCV 4 does) on the same photographs in one run, by one
protocol (:mod:`vj.photo_scores`):

* the photo set is ``photos/wider_val`` of the shared data (WIDER FACE validation
  photos, never used for training); faces are its scoring set
  (``annotations_eval24.txt``), every other annotated box is don't-care;
* a detection matches a face when its centre lies within half the face's larger side
  of the face's centre and its size is 0.5-3x that side (``vj.metrics``' ``"centre"``
  rule: WIDER's boxes are tight, brow to chin);
* detections are ranked by score: for a cascade alone (grouped at ``min_neighbors`` 1
  unless the spec says otherwise) how far its best window cleared the last stages
  (``CascadeDetector.detect``'s score; ``,score=neighbors`` ranks by neighbour count,
  as OpenCV's ``detectMultiScale2``), for the verified pipeline its face evidence;
* the detection rate is read at 50 / 100 / 200 / 500 / 1,000 false positives over the
  whole set; recall is broken down by brightness, contrast and size terciles of the
  face box and by WIDER's blur / illumination / occlusion codes, with all detections
  and at ``--group-budget`` false positives.

``--subset even`` / ``odd`` takes every other photo, so that choices made on one half
can be confirmed on the other. Windows are cached per detector and settings in
``--workdir`` (see :mod:`vj_apps.photo_runs`): operating points that differ only in
``min_neighbors`` or ``accept`` cost one scan.

Usage::

    python -m vj_apps.eval_photos [--subset even] [--json out.json] [--plot out.png]
        [--detectors frontalface opencv:alt verified:frontalface@8,mn=1 ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from vj.atomic import atomic_write_text
from vj.image_sources import read_gray, resolve_data_dir
from vj.photo_scores import (
    BUDGETS,
    face_groups,
    group_recall,
    score_detections,
    score_threshold_at,
)
from vj.photo_sets import SUBSETS, PhotoSet, read_photo_set

__all__ = ["DEFAULT_DETECTORS", "build_parser", "evaluate", "main"]

#: The project's detectors and OpenCV 4's classical peers.
DEFAULT_DETECTORS = ("frontalface", "opencv:default", "opencv:alt", "opencv:alt2",
                     "verified:frontalface")
_REPO = Path(__file__).resolve().parent.parent


def build_parser() -> argparse.ArgumentParser:
    from vj_apps.photo_runs import parse_spec  # noqa: F401  (documented in the help)

    p = argparse.ArgumentParser(prog="eval_photos", description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, metavar="DIR",
                   help="shared data folder (default: $VJ_DATA or ../shared/data)")
    p.add_argument("--photos", default="photos/wider_val", metavar="REL",
                   help="photo set below the data folder (default: photos/wider_val)")
    p.add_argument("--subset", choices=SUBSETS, default="all",
                   help="all photos, or the even- / odd-numbered half")
    p.add_argument("--max-photos", type=int, default=None, help="only the first N photos")
    p.add_argument("--detectors", nargs="+", default=list(DEFAULT_DETECTORS), metavar="SPEC",
                   help="[verified:]CASCADE[@STAGES][,mn=N][,accept=P][,models=DIR]"
                   "[,score=S][,step=K][,name=TEXT] (default: %(default)s)")
    p.add_argument("--cascade-neighbors", type=int, default=1,
                   help="min_neighbors of cascades alone unless a spec says (default: 1)")
    p.add_argument("--verified-neighbors", type=int, default=None,
                   help="min_neighbors of verified detectors unless a spec says "
                   "(default: the pipeline's own)")
    p.add_argument("--models", default=None, metavar="DIR",
                   help="verifier weights (default: the shipped ones)")
    p.add_argument("--scale-factor", type=float, default=1.1)
    p.add_argument("--min-size", type=int, default=None)
    p.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    p.add_argument("--group-budget", type=int, default=100,
                   help="false positives at which group recalls are also read (default 100)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--workdir", default=str(_REPO / "runs" / "eval_photos"), metavar="DIR")
    p.add_argument("--json", default=None, metavar="OUT", help="write every number here")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="detection-rate plot")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _groups_report(photos: PhotoSet, dets, groups: dict, threshold: float) -> dict:
    out = {}
    for key, (labels, names) in groups.items():
        every = group_recall(photos, dets, labels, len(names))
        at_budget = group_recall(photos, dets, labels, len(names), threshold)
        out[key] = {name: {"faces": n, "recall": r, "recall_at_budget": rb}
                    for name, (n, r), (_, rb) in zip(names, every, at_budget, strict=True)}
    return out


def evaluate(photos: PhotoSet, specs: list, args: argparse.Namespace,
             log=print) -> dict:
    """Run and score every detector spec on ``photos``; returns the report dict."""
    from tqdm import tqdm
    from vj_apps.photo_runs import detections, run_windows

    paths = [p.path for p in photos.photos]
    images = [read_gray(p) for p in paths]
    groups = face_groups(photos, images)
    del images
    report = {}
    for spec in specs:
        t0 = time.perf_counter()
        with tqdm(total=len(paths), desc=spec.name, disable=args.quiet, leave=False,
                  file=sys.stderr) as bar:
            runs = run_windows(spec, photos.root, paths, Path(args.workdir),
                               scale_factor=args.scale_factor, min_size=args.min_size,
                               workers=args.workers, progress=bar.update)
        dets = detections(spec, runs)
        result = score_detections(photos, dets, args.budgets)
        threshold = score_threshold_at(photos, dets, args.group_budget)
        result["groups"] = _groups_report(photos, dets, groups, threshold)
        result["spec"] = {k: getattr(spec, k) for k in spec.__dataclass_fields__}
        result["ms_per_photo_median"] = float(np.median([r["ms"] for r in runs]))
        result["windows_per_photo"] = float(np.mean([len(r["windows"]) for r in runs]))
        report[spec.name] = result
        log(f"  {spec.name}: {time.perf_counter() - t0:.0f} s")
    return report


def _print_report(report: dict, budgets: list[int], group_budget: int) -> None:
    head = " | ".join(f"@{b}" for b in budgets)
    print(f"\n| detector | {head} | most | FP in all |")
    print("|---|" + "---|" * (len(budgets) + 2))
    for name, r in report.items():
        rates = " | ".join(f"{100 * r['rate_at'][b]:.1f}" for b in budgets)
        print(f"| {name} | {rates} | {100 * r['most']:.1f} | {r['false_positives']} |")
    print(f"\nrecall (%) by face group, all detections / at {group_budget} FP:")
    first = next(iter(report.values()))["groups"]
    for key, labels in first.items():
        names = [n for n, g in labels.items() if g["faces"]]
        print(f"\n| {key} | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for name, r in report.items():
            cells = [f"{100 * r['groups'][key][n]['recall']:.1f} / "
                     f"{100 * r['groups'][key][n]['recall_at_budget']:.1f}" for n in names]
            print(f"| {name} | " + " | ".join(cells) + " |")
        print("| (faces) | " + " | ".join(str(labels[n]["faces"]) for n in names) + " |")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vj_apps.photo_runs import parse_spec

    try:
        if args.workers < 1 or args.group_budget < 0 or min(args.budgets) < 0:
            raise ValueError("--workers must be >= 1 and budgets >= 0")
        verified_mn = args.verified_neighbors
        if verified_mn is None:
            from vj_dynamic.face.pipeline import MIN_NEIGHBORS as verified_mn
        specs = [parse_spec(s, cascade_neighbors=args.cascade_neighbors,
                            verified_neighbors=verified_mn, models=args.models)
                 for s in args.detectors]
        if len({s.name for s in specs}) != len(specs):
            raise ValueError("two detector specs share a name; add name=... to one")
        root = resolve_data_dir(args.data) / args.photos
        photos = read_photo_set(root).subset(args.subset, args.max_photos)
        print(f"eval_photos: {len(photos)} photos ({args.subset}), {photos.n_faces} faces "
              f"to find, {sum(len(p.ignore) for p in photos.photos)} don't-care boxes",
              file=sys.stderr)
        report = evaluate(photos, specs, args,
                          log=lambda m: print(m, file=sys.stderr))
    except (ValueError, FileNotFoundError) as exc:
        print(f"eval_photos: {exc}", file=sys.stderr)
        return 2
    _print_report(report, args.budgets, args.group_budget)
    protocol = {"photos": str(root), "subset": args.subset, "n_photos": len(photos),
                "faces": photos.n_faces, "match": "centre", "scale_factor": args.scale_factor,
                "min_size": args.min_size, "budgets": args.budgets,
                "group_budget": args.group_budget}
    if args.json:
        atomic_write_text(args.json, json.dumps({"protocol": protocol, "detectors": report},
                                                indent=1) + "\n")
    if args.plot:
        from vj.metrics import plot_detection_rate

        curves = {n: (r["curve"]["false_positives"], r["curve"]["detection_rate"])
                  for n, r in report.items()}
        plot_detection_rate(curves, args.plot, marks=args.budgets,
                            title=f"{root.name} ({args.subset}, {photos.n_faces} faces)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
