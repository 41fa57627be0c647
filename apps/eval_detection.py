"""Compare face cascades on the same images: detection rate vs false positives.

Two test sets, both run through the project's detector (OpenCV-exact):

``orl``
    the 400 AT&T (ORL) images, one upright face each, no boxes. A detection is
    the face when its centre lies in the middle of the image (x in 25-75 %,
    y in 20-75 %) and it is 30 to 95 px wide; the image counts as detected if
    one such box exists, every other box is a false positive.
``scenes``
    a labelled validation set built from the shared data: the held-out
    validation faces of the training split (their original crops, feathered
    at the edges, randomly mirrored) pasted at random sizes (24-160 px) and
    places into background photographs the trainer never saw (SUN). Ground
    truth is each face's window box; a detection matches a face with
    IoU >= 0.5 under the matching rule of :mod:`vj.metrics`, the rest are false
    positives.

For every cascade the raw windows are grouped at ``min_neighbors`` 0..N, which
traces detection rate against false positives; the summary reports each
cascade at the standard ``min_neighbors=3`` and compares detection rates at
equal false-positive counts. It also records the mean number of features a
window costs with OpenCV's early exit (every node of every stage up to the
one that rejects it; flat windows cost nothing), over windows sampled evenly
from every image's pyramid, next to the project detector's own count (which
also counts the features its vectorised first stages evaluate for windows an
early exit would have skipped).

Usage: ``python -m vj_apps.eval_detection [--cascades frontalface opencv:default opencv:alt]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from vj.image_sources import list_images, read_gray, resolve_data_dir
from vj.metrics import box_iou, match_detections

__all__ = ["build_scenes", "main", "run"]

NEIGHBORS = tuple(range(0, 13))
POS_BOX = (0.1, 0.06, 0.8, 0.8)  # where the window sits in a caltech36 crop


def _feather(h: int, w: int, margin: float) -> np.ndarray:
    """Alpha mask, 1 inside and ramping to 0 over ``margin`` of each side."""
    ry = np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5) / (margin * h)
    rx = np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5) / (margin * w)
    return np.clip(np.minimum(ry[:, None], rx[None, :]), 0, 1)


def build_scenes(
    data: Path, n_scenes: int = 150, seed: int = 0, faces_per_scene: tuple[int, int] = (1, 6)
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validation scenes: ``(gray image, (n, 4) face boxes)`` (see the module notes)."""
    from vj.positives import load_positives, read_face_crops

    faces_dir = data / "faces" / "caltech36"
    split = load_positives([faces_dir], (24, 24), POS_BOX, seed=seed)
    crops = read_face_crops([faces_dir], (36, 36))[split.source_index["validation"]]
    bgs = list_images([data / "backgrounds" / "sun"])
    rng = np.random.default_rng([seed, 77])
    out = []
    for path in [bgs[i] for i in rng.permutation(len(bgs))[:n_scenes]]:
        img = read_gray(path).astype(np.float64)
        s = 640 / max(img.shape)
        if s < 1:
            img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        h, w = img.shape
        boxes = []
        for _ in range(int(rng.integers(faces_per_scene[0], faces_per_scene[1] + 1))):
            fw = int(np.exp(rng.uniform(np.log(24), np.log(min(160, 0.5 * min(h, w))))))
            cw = int(round(fw / POS_BOX[2]))
            for _attempt in range(20):
                x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - cw + 1))
                box = (x0 + POS_BOX[0] * cw, y0 + POS_BOX[1] * cw, fw, fw)
                if not boxes or box_iou(np.array([(x0, y0, cw, cw)]),
                                    np.array([(b[0] - POS_BOX[0] * b[2] / POS_BOX[2],
                                               b[1] - POS_BOX[1] * b[2] / POS_BOX[2],
                                               b[2] / POS_BOX[2], b[2] / POS_BOX[2])
                                              for b in boxes])).max() == 0:
                    break
            else:
                continue
            crop = crops[rng.integers(len(crops))]
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            patch = cv2.resize(crop, (cw, cw), interpolation=cv2.INTER_AREA if cw < 36
                               else cv2.INTER_LINEAR).astype(np.float64)
            a = _feather(cw, cw, 0.08)
            region = img[y0:y0 + cw, x0:x0 + cw]
            img[y0:y0 + cw, x0:x0 + cw] = a * patch + (1 - a) * region
            boxes.append(box)
        out.append((np.clip(img.round(), 0, 255).astype(np.uint8),
                    np.asarray(boxes, np.float64).reshape(-1, 4)))
    return out


def _orl(data: Path) -> list[np.ndarray]:

    # The 400 PGM portraits only (the folder may hold other files).
    return [read_gray(p) for p in list_images([data / "orl"]) if p.suffix.lower() == ".pgm"]


def _orl_truth(img: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    h, w = img.shape
    cx = boxes[:, 0] + boxes[:, 2] / 2
    cy = boxes[:, 1] + boxes[:, 3] / 2
    return ((cx > 0.25 * w) & (cx < 0.75 * w) & (cy > 0.2 * h) & (cy < 0.75 * h)
            & (boxes[:, 2] >= 30) & (boxes[:, 2] <= 95))


def stage_depth_cost(cascade, patches: np.ndarray) -> np.ndarray:
    """Features each window costs with OpenCV's early exit (flat windows cost 0).

    A window pays for every node of every stage up to and including the one that
    rejects it. Stage sums are float64 sums of float32 leaves, as the detector's.
    """
    from vj.feature_eval import window_norm_factors

    alive = window_norm_factors(patches)[1]
    cost = np.zeros(len(patches))
    t0 = 0
    node_start = cascade.tree_node_start
    leaf_start = cascade.tree_leaf_start
    eff = cascade.effective_stage_threshold
    for s in range(cascade.n_stages):
        trees = range(t0, t0 + int(cascade.stage_trees[s]))
        idx = np.nonzero(alive)[0]
        if idx.size == 0:
            break
        nodes = np.concatenate([np.arange(node_start[t], node_start[t] + cascade.tree_nodes[t])
                                for t in trees])
        used = np.unique(cascade.node_feature[nodes])
        col = np.full(len(cascade.features), -1)
        col[used] = np.arange(used.size)
        vals = cascade.features.evaluate(patches[idx], feature_index=used)
        if bool(np.all(cascade.tree_nodes[list(trees)] == 1)):
            # Stumps: the whole stage in one vectorised step.
            k = node_start[list(trees)]
            go = vals[:, col[cascade.node_feature[k]]] < cascade.node_threshold[k]
            lv = cascade.leaf_values
            score = np.where(go, lv[leaf_start[list(trees)]],
                             lv[leaf_start[list(trees)] + 1]).astype(np.float64)
            score = np.cumsum(score, axis=1)[:, -1]  # in tree order, as the detector adds
        else:
            score = _tree_scores(cascade, trees, vals, col, node_start, leaf_start)
        cost[idx] += nodes.size
        alive[idx[score < np.float64(eff[s])]] = False
        t0 += int(cascade.stage_trees[s])
    return cost


def _tree_scores(cascade, trees, vals, col, node_start, leaf_start) -> np.ndarray:
    score = np.zeros(vals.shape[0])
    for t in trees:
        k0 = int(node_start[t])
        node = np.zeros(vals.shape[0], np.int64)
        leaf = np.full(vals.shape[0], -1)
        todo = np.ones(vals.shape[0], bool)
        while todo.any():
            r = np.nonzero(todo)[0]
            k = k0 + node[r]
            go = vals[r, col[cascade.node_feature[k]]] < cascade.node_threshold[k]
            child = np.where(go, cascade.node_left[k], cascade.node_right[k])
            done = child <= 0
            leaf[r[done]] = -child[done]
            todo[r[done]] = False
            node[r[~done]] = child[~done]
        score += cascade.leaf_values[leaf_start[t] + leaf].astype(np.float64)
    return score


def features_per_window(cascade, images, *, min_size: int, per_image: int = 1000,
                        seed: int = 0) -> float:
    """Mean early-exit features per window over windows sampled across every image's pyramid.

    Windows are drawn with equal probability from all pyramid levels (scale
    factor 1.1, OpenCV's steps: 2 pixels below scale 2, else 1), each level
    resized as the detector resizes it.
    """
    from vj.pyramid import opencv_scales

    rng = np.random.default_rng([seed, 99])
    ww, wh = cascade.window
    total, count = 0.0, 0
    for img in images:
        h, w = img.shape
        levels = []
        for sc in opencv_scales((w, h), (ww, wh), 1.1, (min_size, min_size), (0, 0)):
            lw, lh = int(round(w / sc)), int(round(h / sc))
            step = 1 if sc > 2 else 2
            n = len(range(0, lw - ww + 1, step)) * len(range(0, lh - wh + 1, step))
            if n > 0:
                levels.append((float(sc), lw, lh, step, n))
        n_all = sum(lv[4] for lv in levels)
        if n_all == 0:
            continue
        p = min(1.0, per_image / n_all)
        patches = []
        for sc, lw, lh, step, _ in levels:
            small = cv2.resize(img, (lw, lh), fx=1 / sc, fy=1 / sc,
                               interpolation=cv2.INTER_LINEAR_EXACT)
            ys, xs = np.mgrid[0:lh - wh + 1:step, 0:lw - ww + 1:step]
            pick = rng.random(ys.size) < p
            for y, x in zip(ys.ravel()[pick], xs.ravel()[pick], strict=True):
                patches.append(small[y:y + wh, x:x + ww])
        if patches:
            cost = stage_depth_cost(cascade, np.ascontiguousarray(np.stack(patches)))
            total += float(cost.sum())
            count += cost.size
    return total / max(count, 1)


def evaluate(detector, images, truths, *, min_size: int, kind: str) -> dict:
    """Detection rate and false positives per ``min_neighbors`` for one cascade."""
    from vj.grouping import group_rectangles

    tp = np.zeros(len(NEIGHBORS), np.int64)
    fp = np.zeros(len(NEIGHBORS), np.int64)
    n_true = 0
    windows = features = 0
    t0 = time.perf_counter()
    for img, truth in zip(images, truths, strict=True):
        raw = detector.candidates(img, 1.1, min_size=min_size)
        windows += detector.last_stats.windows
        features += detector.last_stats.features
        n_true += 1 if kind == "orl" else len(truth)
        for i, k in enumerate(NEIGHBORS):
            boxes = group_rectangles(raw, k, 0.2)[0] if k else raw
            if kind == "orl":
                good = _orl_truth(img, np.asarray(boxes).reshape(-1, 4))
                tp[i] += int(good.any())
                fp[i] += len(boxes) - int(good.any())
            else:
                boxes = np.asarray(boxes).reshape(-1, 4)
                hits = match_detections([truth], [(boxes, np.ones(len(boxes)))]).true_positive
                tp[i] += int(hits.sum())
                fp[i] += int((~hits).sum())
    return {
        "min_neighbors": list(NEIGHBORS),
        "detection_rate": (tp / max(n_true, 1)).round(4).tolist(),
        "false_positives": fp.tolist(),
        "faces": n_true,
        "images": len(images),
        "features_per_window": round(features_per_window(detector.cascade, images,
                                                         min_size=min_size), 2),
        "detector_features_per_window": round(features / max(windows, 1), 2),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def rate_at_fp(res: dict, fp: float) -> float:
    """Best detection rate a cascade reaches with at most ``fp`` false positives."""
    ok = [d for d, f in zip(res["detection_rate"], res["false_positives"], strict=True)
          if f <= fp]
    return max(ok) if ok else 0.0


def run(cascades: list[str], data: str | None = None, n_scenes: int = 150, seed: int = 0,
        sets: tuple[str, ...] = ("orl", "scenes")) -> dict:
    """Evaluate ``cascades`` (names or paths) on the test sets; returns the figures."""
    import vj

    data_dir = resolve_data_dir(data)
    out: dict = {"cascades": cascades, "sets": {}}
    inputs = {}
    if "orl" in sets:
        imgs = _orl(data_dir)
        inputs["orl"] = (imgs, [None] * len(imgs), 40)
    if "scenes" in sets:
        scenes = build_scenes(data_dir, n_scenes, seed)
        inputs["scenes"] = ([s[0] for s in scenes], [s[1] for s in scenes], 24)
    for name, (imgs, truths, min_size) in inputs.items():
        res = {}
        for c in cascades:
            det = vj.load(c)
            res[c] = evaluate(det, imgs, truths, min_size=min_size, kind=name)
        ref = res.get("opencv:default")
        if ref is not None:
            fp3 = ref["false_positives"][3]
            res["_at_default_fp"] = {"false_positives": fp3, **{
                c: rate_at_fp(res[c], fp3) for c in cascades}}
        out["sets"][name] = res
    return out


def plot(result: dict, path: str | os.PathLike) -> None:
    """Detection rate vs false positives, one panel per test set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = result["sets"]
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4), squeeze=False)
    for ax, (name, res) in zip(axes[0], sets.items(), strict=True):
        for c in result["cascades"]:
            r = res[c]
            ax.plot(r["false_positives"], r["detection_rate"], "o-", ms=3,
                    label=f"{c} ({r['features_per_window']:.1f} feat/win)")
            ax.plot(r["false_positives"][3], r["detection_rate"][3], "k*", ms=8)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlabel("false positives (min_neighbors 12 .. 0; * = 3)")
        ax.set_ylabel("detection rate")
        ax.set_title(f"{name}: {res[result['cascades'][0]]['faces']} faces, "
                     f"{res[result['cascades'][0]]['images']} images")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Command line: print (and optionally write) the comparison as JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cascades", nargs="+",
                   default=["frontalface", "opencv:default", "opencv:alt"])
    p.add_argument("--data", default=None, help="shared data folder (default $VJ_DATA or "
                                                "../shared/data)")
    p.add_argument("--scenes", type=int, default=150, help="validation scenes to build")
    p.add_argument("--sets", nargs="+", default=["orl", "scenes"], choices=["orl", "scenes"])
    p.add_argument("--seed", type=int, default=0,
                   help="the training run's seed (selects its validation faces)")
    p.add_argument("--json", default=None, help="write the figures here")
    p.add_argument("--plot", default=None, help="write the detection-rate curves here (PNG)")
    a = p.parse_args(argv)
    try:
        res = run(a.cascades, a.data, a.scenes, a.seed, tuple(a.sets))
    except (FileNotFoundError, ValueError) as e:
        print(f"eval_detection: {e}", file=sys.stderr)
        return 2
    text = json.dumps(res, indent=1)
    if a.json:
        from vj.atomic import atomic_write_text

        atomic_write_text(a.json, text)
    if a.plot:
        plot(res, a.plot)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
