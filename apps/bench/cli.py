"""``vj-bench``: the project's benchmarks, each against a peer measured in the same run.

::

    vj-bench                 # detection vs OpenCV, then feature throughput vs scikit-image
    vj-bench detect [...]    # apps/bench_detect.py
    vj-bench features [...]  # apps/bench_features.py
    vj-bench boosting [...]  # apps/bench_boosting.py: one boosting round
    vj-bench dynamic [...]   # apps/bench_dynamic.py: SkipNet / IDK cascade FLOPs and latency
    vj-bench scale [...]     # apps/bench/scale.py: batch images/s, one process vs Dask workers
    vj-bench tafe [...]      # apps/bench/tafe.py: few-shot face verification, TAFE-Net vs baselines
    vj-bench nmn [...]       # apps/bench/nmn.py: neural module networks on SHAPES

Each sub-command takes its own options (``vj-bench detect --help``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

__all__ = ["SUBCOMMANDS", "main"]

SUBCOMMANDS = {
    "detect": ("vj_apps.bench.detect", "detection time vs OpenCV 4 (same XML, images, settings)"),
    "features": ("vj_apps.bench.features", "Haar feature throughput vs scikit-image"),
    "boosting": ("vj_apps.bench.boosting", "one boosting round over all features"),
    "dynamic": ("vj_apps.bench.dynamic", "SkipNet / IDK cascade: FLOPs and wall-clock"),
    "scale": ("vj_apps.bench.scale", "batch detection: one process vs a Dask LocalCluster"),
    "tafe": ("vj_apps.bench.tafe", "few-shot face verification: TAFE-Net vs NN cosine and LR"),
    "nmn": ("vj_apps.bench.nmn", "neural module networks on SHAPES vs a monolithic CNN+GRU"),
}
DEFAULT = ("detect", "features")


def _missing(name: str) -> str | None:
    """What benchmark ``name`` needs and this install lacks, with the fix; None if nothing."""
    if name in ("dynamic", "tafe", "nmn") and importlib.util.find_spec("torch") is None:
        return f"vj-bench {name} needs PyTorch, which is not installed; pip install torch"
    if name == "detect":
        import cv2

        if not hasattr(cv2, "CascadeClassifier"):
            return (f"vj-bench detect times OpenCV 4's CascadeClassifier, which OpenCV "
                    f"{cv2.__version__} lacks; pip install 'opencv-python<5' to run it")
    return None


def _run(name: str, argv: list[str]) -> int:
    problem = _missing(name)
    if problem is not None:
        print(f"vj-bench: {problem}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(SUBCOMMANDS[name][0])
        return int(module.main(argv) or 0)
    except (ImportError, FileNotFoundError) as error:  # a model, a file or a library
        print(f"vj-bench {name}: {error}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        for name, (_, what) in SUBCOMMANDS.items():
            print(f"  {name:10s} {what}")
        return 0
    if not argv or argv[0].startswith("-"):
        rc = 0
        for name in DEFAULT:
            print(f"== vj-bench {name}")
            rc |= _run(name, argv)
        return rc
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"vj-bench: unknown benchmark {name!r}; choose from "
              f"{', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    return _run(name, rest)


if __name__ == "__main__":
    raise SystemExit(main())
