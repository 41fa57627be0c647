"""``vj-train-cascade``: train a Haar cascade, as ``opencv_traincascade`` did.

Examples
--------
::

    vj-train-cascade -data out/ --pos faces/ --bg backgrounds/ -numStages 20
    vj-train-cascade -data out/ --pos info.txt --bg bg.txt -w 24 -h 24 -mode CORE --xml
    vj-train-cascade -data out/ --pos faces/ --bg backgrounds/ --workers 2
    vj-train-cascade -data out/ --pos faces/ --bg backgrounds/ --scheduler tcp://host:8786

Positives are folders of crops or ``opencv_createsamples`` annotation lists
(``path n x y w h ...``); ``--pos-box`` picks the part of each crop or box
that becomes the window. Backgrounds are folders or ``-bg`` path lists of
images without the object. ``-h`` is the window height, as in traincascade;
``--help`` prints this help.

The output folder receives ``cascade.json`` (the project's model format; load
it with ``vj.load``), optionally ``cascade.xml`` (OpenCV), ``report.md``,
``report.json`` and ``report.png``, and the checkpoint ``checkpoint.npz``:
running the same command again resumes from it.

``--workers N`` (an embedded Dask cluster of N processes) or ``--scheduler ADDRESS``
(a running one) spread the negative mining over a cluster; the cascade is the same
as without. The workers read the backgrounds from the same paths (shared storage).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

__all__ = ["build_parser", "main"]

_BOOSTING = {"GAB": "gentle", "DAB": "discrete", "gentle": "gentle", "discrete": "discrete"}


def _box(text: str) -> tuple[float, float, float, float]:
    try:
        v = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected x,y,w,h fractions, got {text!r}") from None
    if len(v) != 4 or v[2] <= 0 or v[3] <= 0:
        raise argparse.ArgumentTypeError(f"expected x,y,w,h with w, h > 0, got {text!r}")
    return v  # type: ignore[return-value]


def _floats(n: int):
    def parse(text: str) -> tuple[float, ...]:
        try:
            v = tuple(float(p) for p in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {n} numbers, got {text!r}") from None
        if len(v) != n or min(v) < 0:
            raise argparse.ArgumentTypeError(f"expected {n} numbers >= 0, got {text!r}")
        return v

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The options of ``vj-train-cascade`` (opencv_traincascade's, plus data and cluster).

    One ``add_argument`` per option, in the order ``--help`` shows them: longer than
    the project's usual function, but a flat list reads better than groups split apart.
    """
    p = argparse.ArgumentParser(
        prog="vj-train-cascade", add_help=False,
        description="Train a Haar cascade (Viola-Jones / opencv_traincascade).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("Examples")[0])
    p.add_argument("--help", action="help", help="show this help and exit")
    io = p.add_argument_group("data")
    io.add_argument("-data", "--output", dest="output", required=True,
                    help="output folder (model, report, checkpoint)")
    io.add_argument("--pos", "-pos", dest="pos", nargs="*", default=[],
                    help="positive crops: folders or annotation lists")
    io.add_argument("--pos-box", type=_box, default=(0.0, 0.0, 1.0, 1.0),
                    help="part of each crop that becomes the window, as x,y,w,h fractions "
                         "(default 0,0,1,1)")
    io.add_argument("--bg", "-bg", dest="bg", nargs="+", required=True,
                    help="background images: folders or path lists")
    io.add_argument("--no-mirror", action="store_true", help="do not add mirrored positives")
    io.add_argument("--jitter-copies", type=int, default=0,
                    help="randomly shifted / scaled / turned copies of each positive (0)")
    io.add_argument("--jitter", type=_floats(3), default=(0.05, 1.0, 6.0),
                    metavar="SCALE,SHIFT,ANGLE",
                    help="jitter range: log-scale, window pixels, degrees (0.05,1,6)")
    io.add_argument("--pos-wider", nargs="+", default=[], metavar="DIR",
                    help="face crops in context with WIDER boxes (annotations.txt), e.g. "
                         "faces/wider_train: the detector's box is cut from each crop's "
                         "context (vj.wider_faces); crops of one photo stay in one split")
    io.add_argument("--wider-keep", default=None, metavar="FILE",
                    help="only the --pos-wider crops this list names (one path per line, "
                         "relative to the crop folder)")
    io.add_argument("--augment-copies", type=int, default=0,
                    help="photometrically degraded copies of each training positive: "
                         "exposure, gamma, uneven light, blur, low resolution, noise, JPEG "
                         "(vj.augment; default 0)")
    io.add_argument("--val-fraction", type=float, default=0.1,
                    help="positives held out for validation (default 0.1)")
    io.add_argument("--calib-fraction", type=float, default=0.15,
                    help="positives held out to set stage thresholds on (default 0.15)")
    io.add_argument("--max-bg-images", type=int, default=None,
                    help="use only the first N background images")
    t = p.add_argument_group("training (traincascade names in brackets)")
    t.add_argument("-w", "--width", type=int, default=24, help="window width [-w] (24)")
    t.add_argument("-h", "--height", type=int, default=24, help="window height [-h] (24)")
    t.add_argument("-numStages", "--num-stages", dest="num_stages", type=int, default=20)
    t.add_argument("-minHitRate", "--min-hit-rate", dest="min_hit_rate", type=float,
                   default=0.995)
    t.add_argument("-maxFalseAlarmRate", "--max-false-alarm-rate", dest="max_false_alarm",
                   type=float, default=0.5)
    t.add_argument("--target-false-alarm", type=float, default=None,
                   help="stop when the cascade's estimated false-alarm rate is below this "
                        "(default maxFalseAlarmRate ** numStages)")
    t.add_argument("-numPos", "--num-pos", dest="num_pos", type=int, default=0,
                   help="training positives per stage (0: all that survive)")
    t.add_argument("-numNeg", "--num-neg", dest="num_neg", type=int, default=5000)
    t.add_argument("-mode", "--mode", dest="mode", type=str.upper, default="BASIC",
                   choices=["BASIC", "CORE", "ALL"])
    t.add_argument("-bt", "--boosting", dest="boosting", default="GAB", choices=list(_BOOSTING))
    t.add_argument("-maxDepth", "--max-depth", dest="max_depth", type=int, default=1)
    t.add_argument("-maxWeakCount", "--max-weak-count", dest="max_weak", type=int, default=200)
    t.add_argument("-weightTrimRate", "--weight-trim-rate", dest="trim", type=float,
                   default=0.95)
    t.add_argument("--feature-fraction", type=float, default=1.0,
                   help="random share of the feature pool each stage searches (1: all)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--checkpoint-every", type=float, default=120.0, metavar="SECONDS")
    c = p.add_argument_group("cluster (Dask, the dask extra): negative mining")
    where = c.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help="mine on an embedded Dask LocalCluster of N processes")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="mine on a running Dask cluster, e.g. tcp://scheduler:8786")
    o = p.add_argument_group("output")
    o.add_argument("--xml", action="store_true", help="also write cascade.xml for OpenCV")
    o.add_argument("--fresh", action="store_true",
                   help="ignore an existing checkpoint and start again")
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _wider(args: argparse.Namespace) -> list:
    """The ``--pos-wider`` crops (only those ``--wider-keep`` lists, if given)."""
    from vj.wider_faces import read_keep_list, read_wider_faces

    if args.wider_keep and len(args.pos_wider) != 1:
        raise ValueError("--wider-keep needs exactly one --pos-wider folder")
    keep = read_keep_list(args.wider_keep) if args.wider_keep else None
    return [f for root in args.pos_wider for f in read_wider_faces(root, keep)]


@contextlib.contextmanager
def _mining_jobs(args: argparse.Namespace, pool, log):
    """The cluster's job runner for ``--workers`` / ``--scheduler``, else None (threads)."""
    if args.workers is None and args.scheduler is None:
        yield None
        return
    from vj.cluster import cluster_client, dashboard_line

    with cluster_client(args.workers, args.scheduler) as client:
        from vj.negatives_dask import ClusterJobs

        log(f"vj-train-cascade: {dashboard_line(client)}")
        yield ClusterJobs(client, pool)


def main(argv: list[str] | None = None) -> int:
    """Run the trainer; returns 0 on success, 2 on bad arguments or data."""
    args = build_parser().parse_args(argv)
    import vj
    from vj.negatives import BackgroundPool
    from vj.opencv_xml import write_xml
    from vj.positives import Jitter, load_positives
    from vj.training import TrainingConfig, train_cascade
    from vj.training_report import write_report

    out = Path(args.output)
    window = (args.width, args.height)
    try:
        config = TrainingConfig(
            window=window, n_stages=args.num_stages, min_hit_rate=args.min_hit_rate,
            max_false_alarm=args.max_false_alarm, target_false_alarm=args.target_false_alarm,
            num_pos=args.num_pos, num_neg=args.num_neg, mode=args.mode,
            boosting=_BOOSTING[args.boosting], max_depth=args.max_depth, max_weak=args.max_weak,
            weight_trim_rate=args.trim, feature_fraction=args.feature_fraction,
            seed=args.seed, checkpoint_every_s=args.checkpoint_every)
        t0 = time.monotonic()
        log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
        log("vj-train-cascade: reading positives ...")
        positives = load_positives(args.pos, window, args.pos_box, wider=_wider(args),
                                   mirror=not args.no_mirror,
                                   validation_fraction=args.val_fraction,
                                   calibration_fraction=args.calib_fraction,
                                   jitter=Jitter(*args.jitter), jitter_copies=args.jitter_copies,
                                   augment_copies=args.augment_copies, seed=args.seed)
        log(f"  {json.dumps(positives.info)}")
        log("vj-train-cascade: reading backgrounds ...")
        pool = BackgroundPool.from_sources(args.bg, window, max_images=args.max_bg_images)
        log(f"  {len(pool)} images, {pool.n_jobs} scan jobs")
        with _mining_jobs(args, pool, log) as jobs:
            result = train_cascade(positives, pool, config, out, resume=not args.fresh,
                                   progress=not args.quiet, mining_jobs=jobs)
    except (ValueError, FileNotFoundError, ModuleNotFoundError, ConnectionError) as e:
        print(f"vj-train-cascade: {e}", file=sys.stderr)
        return 2
    result.info["wall_s_this_session"] = round(time.monotonic() - t0, 1)
    result.info["command"] = "vj-train-cascade " + " ".join(
        sys.argv[1:] if argv is None else argv)
    print(f"vj-train-cascade: stopped: {result.stop_reason}", file=sys.stderr)
    if result.cascade is None:
        print("vj-train-cascade: no stage could be trained; nothing written", file=sys.stderr)
        return 1
    vj.save(result.cascade, out / "cascade.json")
    if args.xml:
        write_xml(result.cascade, out / "cascade.xml")
    paths = write_report(result, out)
    written = [out / "cascade.json", *([out / "cascade.xml"] if args.xml else []),
               *paths.values()]
    print("vj-train-cascade: wrote " + ", ".join(os.fspath(p) for p in written),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
