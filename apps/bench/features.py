"""Throughput of Haar feature evaluation: vj's batch kernel against scikit-image.

Both sides compute the BASIC pool (scikit-image's five feature types, the same
162,336 features on a 24x24 window) on random windows. vj runs the way a
boosting trainer uses it: integral images and normalisation factors once, then
every feature in chunks written into a reused buffer; it is timed end to end
from the uint8 windows. scikit-image's ``haar_like_feature`` is given ready
integral images and computes raw values one window at a time; it is slow, so it
is timed on a strided subset of the features and a few windows, and both sides
are reported in feature values per second.

Run ``python -m vj_apps.bench.features --help``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import numba
import numpy as np

from vj.feature_eval import integral_stack, norm_factors_from_integrals
from vj.features import HaarFeatureSet

__all__ = ["format_table", "main", "run"]

_SKIMAGE_TYPES = ["type-2-x", "type-2-y", "type-3-x", "type-3-y", "type-4"]


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _vj_run(features: HaarFeatureSet, patches: np.ndarray, chunk: int,
            layout: str) -> Callable[[], None]:
    """One warmed-up, timeable pass of vj over every feature and window in ``layout``."""
    n_feat, n_samples = len(features), len(patches)
    buf = np.empty(min(chunk, n_feat) * n_samples, dtype=np.float32)

    def go() -> None:
        sums, sqsums, _ = integral_stack(patches)
        factors, _ = norm_factors_from_integrals(sums, sqsums)
        for start in range(0, n_feat, chunk):
            index = np.arange(start, min(start + chunk, n_feat))
            k = len(index)
            shape = (k, n_samples) if layout == "features_major" else (n_samples, k)
            features.evaluate_integrals(sums, None, factors, feature_index=index,
                                        out=buf[: k * n_samples].reshape(shape), layout=layout)

    go()
    return go


def _time_skimage(patches: np.ndarray, window: int, n_features: int, n_windows: int,
                  repeats: int) -> tuple[int, int, float]:
    """``(features, windows, median seconds)`` of scikit-image on an evenly strided subset."""
    from skimage.feature import haar_like_feature, haar_like_feature_coord
    from skimage.transform import integral_image

    coords, types = haar_like_feature_coord(window, window, _SKIMAGE_TYPES)
    pick = np.linspace(0, len(coords) - 1, min(n_features, len(coords))).astype(np.int64)
    coords, types = coords[pick], types[pick]
    n_win = min(n_windows, len(patches))
    tables = [integral_image(p) for p in patches[:n_win]]

    def theirs() -> None:
        for ii in tables:
            haar_like_feature(ii, 0, 0, window, window, feature_type=types, feature_coord=coords)

    theirs()
    return len(pick), n_win, _median_seconds(theirs, repeats)


def run(
    n_samples: int = 1000,
    window: int = 24,
    repeats: int = 5,
    *,
    chunk: int = 16384,
    skimage_features: int = 4096,
    skimage_windows: int = 3,
    seed: int = 0,
) -> dict[str, float | int]:
    """Time vj and scikit-image on the same feature pool and windows.

    Parameters
    ----------
    n_samples : int
        Windows vj evaluates every feature on.
    window : int
        Square window side.
    repeats : int
        Timed runs per measurement (the median is reported), after one warm-up.
    chunk : int
        Features per :meth:`~vj.features.HaarFeatureSet.evaluate_integrals` call.
    skimage_features, skimage_windows : int
        Size of scikit-image's share: an evenly strided subset of the features,
        on the first windows.
    seed : int
        Seed of the random windows.

    Returns
    -------
    dict
        Plain numbers: ``n_features``, ``threads``, ``cold_start_s`` (first calls
        in this process: JIT compilation, or loading it from numba's cache),
        ``vj_s`` and ``vj_values_per_s`` (features-major, as a trainer reads
        them), ``vj_samples_major_values_per_s``, ``skimage_s``,
        ``skimage_values_per_s``, ``speedup`` (vj over scikit-image, per value)
        and the arguments.
    """
    for name, v in (("n_samples", n_samples), ("window", window), ("repeats", repeats),
                    ("chunk", chunk), ("skimage_features", skimage_features),
                    ("skimage_windows", skimage_windows)):
        if v < 1:
            raise ValueError(f"{name} must be at least 1, got {v}")
    if window < 3:
        raise ValueError(f"window must be at least 3 to normalise, got {window}")
    rng = np.random.default_rng(seed)
    patches = rng.integers(0, 256, (n_samples, window, window), dtype=np.uint8)
    features = HaarFeatureSet.enumerate(window, window, "BASIC")
    n_feat = len(features)

    t0 = time.perf_counter()
    for layout in ("features_major", "samples_major"):
        features.evaluate(patches[:2], feature_index=np.arange(min(n_feat, 64)), layout=layout)
    cold = time.perf_counter() - t0

    total = n_feat * n_samples
    results = {layout: _median_seconds(_vj_run(features, patches, chunk, layout), repeats)
               for layout in ("features_major", "samples_major")}
    n_pick, n_win, sk_s = _time_skimage(patches, window, skimage_features, skimage_windows,
                                        repeats)
    vj_rate = total / results["features_major"]
    sk_rate = n_pick * n_win / sk_s
    return {
        "window": window,
        "n_features": n_feat,
        "n_samples": n_samples,
        "repeats": repeats,
        "chunk": chunk,
        "threads": numba.get_num_threads(),
        "cold_start_s": cold,
        "vj_s": results["features_major"],
        "vj_values_per_s": vj_rate,
        "vj_samples_major_s": results["samples_major"],
        "vj_samples_major_values_per_s": total / results["samples_major"],
        "skimage_features": n_pick,
        "skimage_windows": n_win,
        "skimage_s": sk_s,
        "skimage_values_per_s": sk_rate,
        "speedup": vj_rate / sk_rate,
    }


def format_table(r: dict[str, float | int]) -> str:
    """A readable table of :func:`run`'s result."""
    w = r["window"]
    rows = [
        ("vj, features-major", r["n_samples"], r["n_features"], r["vj_s"], r["vj_values_per_s"]),
        ("vj, samples-major", r["n_samples"], r["n_features"], r["vj_samples_major_s"],
         r["vj_samples_major_values_per_s"]),
        ("scikit-image", r["skimage_windows"], r["skimage_features"], r["skimage_s"],
         r["skimage_values_per_s"]),
    ]
    lines = [
        f"Haar feature values, {w}x{w} window, BASIC pool of {r['n_features']:,} features, "
        f"{r['threads']} threads, median of {r['repeats']}",
        f"{'':20} {'windows':>8} {'features':>9} {'median s':>9} {'values/s':>10}",
    ]
    lines += [f"{name:20} {n:>8,} {f:>9,} {s:>9.4f} {v:>10.3g}" for name, n, f, s, v in rows]
    lines.append(f"speed-up per value (features-major / scikit-image): {r['speedup']:,.0f}x")
    lines.append(f"cold start (first calls: JIT compile or cache load): {r['cold_start_s']:.2f} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000, help="windows for vj (default 1000)")
    parser.add_argument("--window", type=int, default=24, help="window side (default 24)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (default 5)")
    parser.add_argument("--chunk", type=int, default=16384, help="features per call")
    parser.add_argument("--skimage-features", type=int, default=4096,
                        help="features scikit-image computes (default 4096)")
    parser.add_argument("--skimage-windows", type=int, default=3,
                        help="windows scikit-image computes them on (default 3)")
    args = parser.parse_args(argv)
    try:
        result = run(args.samples, args.window, args.repeats, chunk=args.chunk,
                     skimage_features=args.skimage_features,
                     skimage_windows=args.skimage_windows)
    except ValueError as err:
        parser.error(str(err))
    print(format_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
