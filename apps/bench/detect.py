"""Benchmark detection against OpenCV 4's ``detectMultiScale`` on the same images.

Both detectors use the same cascade XML, the same images and the same settings,
and the same number of threads (``numba.set_num_threads`` and
``cv2.setNumThreads``). After a warm-up call each, the two run alternately
(ours, OpenCV, ours, ...) so that a busy machine slows both alike, and the
medians are compared. The paper's scan (``scan="features"``) is timed in the
same rounds.

Usage: ``python -m vj_apps.bench.detect [--repeats 9] [--threads 1 2] [--cascades ...]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

__all__ = ["default_images", "main", "run"]

SIZE = (640, 480)


def _gray(img: np.ndarray) -> np.ndarray:
    import cv2

    if img.ndim == 3:
        img = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)
    return cv2.resize(np.ascontiguousarray(img), SIZE, interpolation=cv2.INTER_AREA)


def default_images(n_photos: int = 3) -> dict[str, np.ndarray]:
    """scikit-image's astronaut, coffee, camera and chelsea plus a few SUN photos, 640x480.

    The photos come from ``$VJ_DATA/backgrounds/sun`` (default ``../shared/data``
    beside the repository) when that folder exists.
    """
    import cv2
    import skimage.data as d

    images = {name: _gray(getattr(d, name)()) for name in
              ("astronaut", "coffee", "camera", "chelsea")}
    env = os.environ.get("VJ_DATA")
    root = Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    sun = sorted((root / "backgrounds" / "sun").glob("*.jpg"))
    for p in sun[:: max(len(sun) // max(n_photos, 1), 1)][:n_photos]:
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is not None:
            images[f"sun/{p.name}"] = _gray(img)
    return images


def _median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1e3


def run(
    images: dict[str, np.ndarray] | None = None,
    cascades=("opencv:default", "opencv:alt2"),
    threads=(1, 2),
    repeats: int = 9,
    scale_factor: float = 1.1,
    min_neighbors: int = 3,
) -> list[dict]:
    """Time ours against OpenCV; one row per cascade, thread count and image.

    Returns
    -------
    list of dict
        ``cascade, threads, image, size`` ("WxH"), ``ms_ours``, ``ms_opencv``,
        ``ratio`` (ours / OpenCV: below 1 is faster), ``ms_features_mode`` and
        ``same_boxes`` (our boxes equal OpenCV's).
    """
    import cv2
    import numba

    import vj
    from vj.models import resolve

    if images is None:
        images = default_images()
    old_numba, old_cv = numba.get_num_threads(), cv2.getNumThreads()
    rows = []
    try:
        for name in cascades:
            det = vj.load(name)
            ref = cv2.CascadeClassifier(str(resolve(name)))
            for n in threads:
                numba.set_num_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))
                cv2.setNumThreads(int(n))
                for key, img in images.items():
                    ours = det.detect(img, scale_factor, min_neighbors)
                    theirs = ref.detectMultiScale(img, scale_factor, min_neighbors)
                    det.detect(img, scale_factor, min_neighbors, scan="features")
                    t_ours, t_cv, t_feat = [], [], []
                    for _ in range(repeats):
                        t = time.perf_counter()
                        det.detect(img, scale_factor, min_neighbors)
                        t_ours.append(time.perf_counter() - t)
                        t = time.perf_counter()
                        ref.detectMultiScale(img, scale_factor, min_neighbors)
                        t_cv.append(time.perf_counter() - t)
                        t = time.perf_counter()
                        det.detect(img, scale_factor, min_neighbors, scan="features")
                        t_feat.append(time.perf_counter() - t)
                    same = (sorted(map(tuple, np.asarray(ours).tolist()))
                            == sorted(map(tuple, np.asarray(theirs).reshape(-1, 4).tolist())))
                    rows.append({
                        "cascade": name,
                        "threads": int(n),
                        "image": key,
                        "size": f"{img.shape[1]}x{img.shape[0]}",
                        "ms_ours": _median_ms(t_ours),
                        "ms_opencv": _median_ms(t_cv),
                        "ratio": statistics.median(t_ours) / statistics.median(t_cv),
                        "ms_features_mode": _median_ms(t_feat),
                        "same_boxes": same,
                    })
    finally:
        numba.set_num_threads(old_numba)
        cv2.setNumThreads(old_cv)
    return rows


def _table(rows: list[dict]) -> str:
    head = (f"{'cascade':16} {'thr':>3} {'image':18} {'size':>8} {'ours ms':>8} "
            f"{'opencv ms':>9} {'ratio':>6} {'feat ms':>8} same")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['cascade']:16} {r['threads']:>3} {r['image'][:18]:18} {r['size']:>8} "
                     f"{r['ms_ours']:8.1f} {r['ms_opencv']:9.1f} {r['ratio']:6.2f} "
                     f"{r['ms_features_mode']:8.1f} {'yes' if r['same_boxes'] else 'NO'}")
    groups: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        groups.setdefault((r["cascade"], r["threads"]), []).append(r["ratio"])
    lines.append("")
    for (name, n), ratios in groups.items():
        geo = float(np.exp(np.mean(np.log(ratios))))
        lines.append(f"{name} at {n} thread(s): ours/OpenCV geometric mean {geo:.2f} "
                     f"over {len(ratios)} images")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the benchmark, print a table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cascades", nargs="+", default=["opencv:default", "opencv:alt2"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--scale-factor", type=float, default=1.1)
    ap.add_argument("--min-neighbors", type=int, default=3)
    ap.add_argument("--photos", type=int, default=3, help="SUN photos to add, if present")
    args = ap.parse_args(argv)
    rows = run(default_images(args.photos), tuple(args.cascades), tuple(args.threads),
               args.repeats, args.scale_factor, args.min_neighbors)
    print(_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
