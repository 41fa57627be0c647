"""Benchmark one boosting round: the best weak learner over all Haar features.

Windows are 24x24 crops from scikit-image's sample photographs (negatives) and
its LFW faces (positives), so the benchmark needs no data files. It times the
once-per-stage preparation (feature values, quantisation) and boosting rounds
without and with weight trimming.

Usage: ``python -m vj_apps.bench.boosting [--samples 10000] [--mode BASIC] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from vj.boosting import StageBooster
from vj.feature_bins import bin_feature_values
from vj.feature_eval import integral_stack, norm_factors_from_integrals
from vj.features import HaarFeatureSet

__all__ = ["benchmark_windows", "main", "run"]


def benchmark_windows(
    n_samples: int, size: int = 24, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Half faces, half background windows: ``(patches (N, size, size) uint8, y (N,) +-1)``."""
    import cv2
    import skimage.data as d

    rng = np.random.default_rng(seed)
    faces = (d.lfw_subset()[:100] * 255).round().astype(np.uint8)
    photos = []
    for name in ("camera", "astronaut", "coffee", "chelsea", "rocket", "coins", "page"):
        img = getattr(d, name)()
        if img.ndim == 3:
            img = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)
        photos.append(np.ascontiguousarray(img))
    n_pos = n_samples // 2
    out = np.empty((n_samples, size, size), np.uint8)
    for i in range(n_pos):
        f = faces[rng.integers(len(faces))]
        c = int(rng.integers(20, 26))
        x, y = (int(v) for v in rng.integers(0, 26 - c, 2))
        crop = f[y : y + c, x : x + c]
        out[i] = cv2.resize(crop[:, ::-1] if rng.random() < 0.5 else crop, (size, size),
                            interpolation=cv2.INTER_AREA)
    for i in range(n_pos, n_samples):
        img = photos[rng.integers(len(photos))]
        s = int(rng.integers(size, min(img.shape) // 2))
        x = int(rng.integers(0, img.shape[1] - s))
        y = int(rng.integers(0, img.shape[0] - s))
        out[i] = cv2.resize(img[y : y + s, x : x + s], (size, size), interpolation=cv2.INTER_AREA)
    y = np.where(np.arange(n_samples) < n_pos, 1, -1)
    return out, y


def run(
    n_samples: int = 10_000, mode: str = "BASIC", n_rounds: int = 3, seed: int = 0,
    boosting: str = "gentle",
) -> dict:
    """Time preparation and boosting rounds; returns the figures (no printing).

    Returns
    -------
    dict
        ``features``, ``samples``, ``threads``, ``prepare_s`` (integral images,
        feature values and quantisation of all features on all samples),
        ``round_s`` (per round, all samples), ``round_trimmed_s`` (per round with
        OpenCV's 0.95 weight trimming, after a few rounds), ``bins_mb``.
    """
    import numba

    feats = HaarFeatureSet.enumerate(24, 24, mode)
    patches, y = benchmark_windows(n_samples, seed=seed)
    # Compile the kernels on a small problem so timings exclude compilation.
    few = np.r_[0:32, n_samples - 32:n_samples]
    StageBooster(_prepare(feats.subset(np.arange(64)), patches[few], 64), y[few],
                 np.arange(64)).step()

    t0 = time.perf_counter()
    fb = _prepare(feats, patches, 1024)
    prepare = time.perf_counter() - t0

    def rounds(trim: float, warm: int) -> float:
        b = StageBooster(fb, y, np.arange(n_samples), boosting=boosting, trim_rate=trim)
        for _ in range(warm):
            b.step()
        t = time.perf_counter()
        for _ in range(n_rounds):
            b.step()
        return (time.perf_counter() - t) / n_rounds

    return {
        "features": len(feats),
        "mode": mode,
        "samples": n_samples,
        "boosting": boosting,
        "threads": numba.get_num_threads(),
        "cpus": os.cpu_count(),
        "prepare_s": round(prepare, 2),
        "round_s": round(rounds(1.0, 0), 3),
        "round_trimmed_s": round(rounds(0.95, 5), 3),
        "bins_mb": round(fb.bins.nbytes / 2**20, 1),
    }


def _prepare(feats: HaarFeatureSet, patches: np.ndarray, edge_samples: int):
    sums, sq, tilted = integral_stack(patches, tilted=feats.has_tilted)
    factors = norm_factors_from_integrals(sums, sq)[0]

    def values(ids, out):
        return feats.evaluate_integrals(sums, tilted, factors, feature_index=ids, out=out,
                                        layout="features_major")

    n = len(patches)
    sample = np.linspace(0, n - 1, min(n, edge_samples)).astype(np.int64)
    return bin_feature_values(values, np.arange(len(feats)), n, sample)


def main(argv: list[str] | None = None) -> int:
    """Command line: print the benchmark figures as JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--mode", default="BASIC", choices=["BASIC", "CORE", "ALL"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--boosting", default="gentle", choices=["gentle", "discrete"])
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.samples < 100:
        p.error("--samples must be at least 100")
    print(json.dumps(run(a.samples, a.mode, a.rounds, a.seed, a.boosting), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
