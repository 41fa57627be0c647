"""Measure the face verification pipeline against its targets, on held-out data only.

Three measurements, all on the ``eval`` part of the image-level split
(:mod:`vj_dynamic.face.sources`): faces, people, background photos and non-face patches
that neither training nor threshold tuning saw.

``crops``
    Accuracy and mean FLOPs per crop of the tiny CNN, the SkipNet and their IDK
    cascade on the cascade windows of held-out images (target: the cascade costs at
    most 0.4x the SkipNet run on every crop, at the same accuracy), and the wall-clock
    time of both on the same crops.
``detection``
    Composite scenes (held-out faces pasted at 24-140 px into held-out photographs)
    plus the held-out ORL images: detection rate at fixed false-positive counts for
    the cascade alone, the cascade with the verifiers, and OpenCV's
    ``CascadeClassifier`` with its default XML (target: at the cascade's recall, at
    least ten times fewer false positives).
``timing``
    Whole-frame time at 640 x 480, scale factor 1.2, minimum face 48 px, of the
    cascade alone and of the pipeline, interleaved repeats, medians (target: at most
    1.3x), on crowded scenes (3-10 faces), on frames with one face (a webcam's view)
    and on face-free photographs.

Usage: ``python -m vj_apps.eval_verifier [--cascade NAME] [--json out.json]``
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from vj_apps.train_verifier import ANNOTATORS, build_crops
from vj_dynamic.face.pipeline import DEFAULT_CASCADE, VerifiedDetector, resolve_cascade
from vj_dynamic.face.scenes import make_scenes, orl_scenes
from vj_dynamic.face.sources import split_sources
from vj_dynamic.face.training import crop_tensors, stage_probabilities
from vj_dynamic.face.verifier import FaceVerifier, load_face_verifier
from vj_dynamic.latency import compare_latency

import vj
from vj.atomic import atomic_write_text
from vj.image_sources import read_gray
from vj.metrics import detection_rate_at, false_positives_at, match_detections

__all__ = ["FP_COUNTS", "build_parser", "eval_crops", "eval_detection", "eval_timing", "main"]

#: False-positive counts at which detection rates are reported.
FP_COUNTS = (0, 5, 10, 25, 50, 100)
_REPO = Path(__file__).resolve().parent.parent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eval_verifier", description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, metavar="DIR")
    p.add_argument("--models", default=None, metavar="DIR",
                   help="verifier weights (default: the shipped ones)")
    p.add_argument("--cascade", default=DEFAULT_CASCADE, metavar="NAME|PATH",
                   help=f"cascade in front of the verifiers (default: {DEFAULT_CASCADE})")
    p.add_argument("--stages", type=int, default=None)
    p.add_argument("--threshold", type=float, default=None,
                   help="IDK threshold of the tiny CNN (default: the one saved with the models)")
    p.add_argument("--dedup-cell", type=int, default=None,
                   help="near-duplicate cell of the pipeline (default: its own)")
    p.add_argument("--workdir", default=str(_REPO / "runs" / "verifier"), metavar="DIR")
    p.add_argument("--eval-backgrounds", type=int, default=200)
    p.add_argument("--eval-scenes", type=int, default=150,
                   help="composite scenes whose windows make the crop set")
    p.add_argument("--scenes", type=int, default=200, help="composite detection scenes")
    p.add_argument("--frames", type=int, default=10, help="640x480 frames of each kind to time")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--only", choices=("crops", "detection", "timing"), action="append",
                   help="run only these measurements (repeatable)")
    p.add_argument("--threads", type=int, default=1,
                   help="PyTorch threads of the verifiers (default 1; 0: PyTorch's own "
                        "default, all cores, as vj-webcam and vj-detect run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="OUT", help="write all numbers here")
    return p


def eval_crops(verifier, crops) -> dict[str, Any]:
    """Accuracy, FLOPs and time of each stage alone and of the IDK cascade on ``crops``."""
    x, y = crop_tensors(crops)
    labels = y.numpy()
    tiny_p, skip_p, skip_flops = stage_probabilities(verifier, x)
    verdict = verifier.verify(crops.crops)
    cascade_correct = (verdict.face_probability > 0.5) == (labels == 1)
    dense = float(verifier.skipnet.flop_breakdown(verifier.size, verifier.size).dense())
    batch = 256
    chunks = [x[i:i + batch] for i in range(0, len(x), batch)]
    raw = [crops.crops[i:i + batch] for i in range(0, len(x), batch)]
    timing = compare_latency({
        "cascade": lambda: [verifier.verify(c) for c in raw],
        "skipnet": lambda: [verifier.skip_classifier.predict_proba(c) for c in chunks],
    }, warmup=1, repeats=3)
    return {
        "n": int(len(labels)),
        "faces": int(labels.sum()),
        "tiny": {"accuracy": float((tiny_p.argmax(1) == labels).mean()),
                 "flops": float(verifier.tiny.flops())},
        "skipnet": {"accuracy": float((skip_p.argmax(1) == labels).mean()),
                    "flops": float(skip_flops.mean()), "dense_flops": dense},
        "cascade": {"accuracy": float(cascade_correct.mean()),
                    "flops": verdict.stats.cost_per_input,
                    "deferred": float((verdict.decided_by == 1).mean()),
                    "threshold": verifier.threshold},
        "cost_ratio": verdict.stats.cost_per_input / float(skip_flops.mean()),
        "ms_per_1000": {k: v.median_ms * 1000 / len(labels) for k, v in timing.items()},
        "time_ratio": timing["cascade"].median_ms / timing["skipnet"].median_ms,
        # The cascade's inputs are uint8 crops, so its time includes standardising them.
    }


def _opencv_detector():
    xml = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    classifier = cv2.CascadeClassifier(str(xml))

    def detect(image, scale_factor, min_neighbors):
        boxes, counts = classifier.detectMultiScale2(image, scale_factor, min_neighbors)
        return np.asarray(boxes).reshape(-1, 4), np.asarray(counts, np.float64).reshape(-1)

    return detect


def _curve(scenes, detections) -> dict[str, Any]:
    scores, tp, n_faces = match_detections([s.faces for s in scenes], detections)
    return {"faces": n_faces, "detections": int(len(tp)), "found": int(tp.sum()),
            "false_positives": int((~tp).sum()), "recall": float(tp.sum() / n_faces),
            "rate_at_fp": {str(k): detection_rate_at(scores, tp, n_faces, k) for k in FP_COUNTS},
            "_scored": (scores, tp, n_faces)}


def eval_detection(scenes, cascade: vj.CascadeDetector, pipeline: VerifiedDetector,
                   scale_factor: float = 1.1) -> dict[str, Any]:
    """Detection rate against false positives for four detectors on ``scenes``.

    The detectors: the full cascade alone (``cascade``), its lenient first stages alone
    (``lenient``, what the pipeline verifies), the pipeline, and OpenCV's
    ``CascadeClassifier`` with its default XML. Each runs at ``min_neighbors=3`` (its
    default operating point) and at ``min_neighbors=1``, whose scores (neighbour
    counts; for the pipeline the face evidence) sweep the curve.

    ``target`` compares false positives at equal recall: for each operating point of
    the cascade alone (full or lenient, ``min_neighbors`` 3 or 1), the false positives
    the pipeline has at that recall on its curve, and the reduction factor.
    """
    opencv = _opencv_detector()
    lenient = vj.CascadeDetector(pipeline.proposer.cascade, min_step=pipeline.proposer.min_step)
    runs = {
        "cascade": lambda im, mn: cascade.detect(im, scale_factor, mn, return_scores=True),
        "lenient": lambda im, mn: lenient.detect(im, scale_factor, mn, return_scores=True),
        "pipeline": lambda im, mn: pipeline.detect(im, scale_factor, mn, return_scores=True),
        "opencv": lambda im, mn: opencv(im, scale_factor, mn),
    }
    out: dict[str, Any] = {}
    for name, run in runs.items():
        t0 = time.perf_counter()
        default = _curve(scenes, [run(s.image, 3) for s in scenes])
        curve = _curve(scenes, [run(s.image, 1) for s in scenes])
        out[name] = {"min_neighbors_3": default, "curve": curve,
                     "seconds": time.perf_counter() - t0}
    scored = out["pipeline"]["curve"]["_scored"]
    out["target"] = {}
    for name in ("cascade", "lenient", "opencv"):
        for key in ("min_neighbors_3", "curve"):
            reference = out[name][key]
            fp = false_positives_at(*scored, reference["recall"])
            out["target"][f"{name}/{key}"] = {
                "recall": reference["recall"],
                "false_positives": reference["false_positives"],
                "pipeline_false_positives": fp,
                "reduction": None if fp is None else reference["false_positives"] / max(fp, 1),
            }
    for name in runs:
        for key in ("min_neighbors_3", "curve"):
            out[name][key].pop("_scored")
    return out


def _frames(split, seed: int, n: int) -> dict[str, list[np.ndarray]]:
    """640 x 480 frames of three kinds: crowded scenes, one face (a webcam's), no face."""
    rng = np.random.default_rng([seed, 7])
    annotators = [vj.load(a) for a in ANNOTATORS]
    orl = [(s.image, s.faces[0]) for s in orl_scenes(split.orl["eval"], annotators)]
    scenes = make_scenes(split.backgrounds["eval"], split.caltech["eval"], orl, n, rng)
    single = make_scenes(split.backgrounds["eval"], [], orl, n, rng, faces_per_scene=(1, 1),
                         orl_sides=(60.0, 200.0))
    empty = []
    for path in split.backgrounds["eval"]:
        image = read_gray(path)
        if image.shape == (480, 640):
            empty.append(image)
        if len(empty) == n:
            break
    return {"scenes with faces": [s.image for s in scenes],
            "one face": [s.image for s in single], "face-free photos": empty}


def eval_timing(frames: dict[str, list[np.ndarray]], cascade: vj.CascadeDetector,
                pipeline: VerifiedDetector, repeats: int) -> dict[str, Any]:
    """Median whole-frame milliseconds (640 x 480, scale 1.2, min 48 px), cascade vs pipeline.

    The pipeline is timed as given and with settling on (``settle=True``, the webcam
    app's setting); the three detectors alternate, repeat after repeat.
    """
    args = (1.2, 3, 48)
    settled = copy.copy(pipeline)
    settled.settle = True
    detectors = {"cascade": cascade, "pipeline": pipeline, "pipeline, settled": settled}
    out: dict[str, Any] = {}
    for kind, images in frames.items():
        if not images:
            continue

        def over(detector, images=images):
            return lambda: [detector.detect(im, *args) for im in images]

        cpu = {}
        for name, det in detectors.items():
            t0 = time.process_time()
            over(det)()
            cpu[name] = (time.process_time() - t0) * 1e3 / len(images)
        timing = compare_latency({name: over(det) for name, det in detectors.items()},
                                 warmup=1, repeats=repeats)
        n = len(images)
        c = timing["cascade"].median_ms / n
        out[kind] = {"frames": n, "cascade_ms": c, "cpu_ms": cpu}
        for name, det in detectors.items():
            if name == "cascade":
                continue
            stages: dict[str, float] = {}
            counts = {"windows": 0, "candidates": 0, "verified": 0, "settled": 0,
                      "accepted": 0}
            decided: dict[str, int] = {}
            for im in images:
                det.detect(im, *args)
                st = det.last_stats
                for key in counts:
                    counts[key] += getattr(st, key)
                for s in st.stages:
                    stages[s.name] = stages.get(s.name, 0.0) + s.ms
                    decided[s.name] = decided.get(s.name, 0) + s.decided
                for key in ("crop_ms", "group_ms"):
                    stages[key[:-3]] = stages.get(key[:-3], 0.0) + getattr(st, key)
            p = timing[name].median_ms / n
            out[kind][name] = {
                "ms": p, "ratio": p / c, "cpu_ratio": cpu[name] / cpu["cascade"],
                "stage_ms": {k: v / n for k, v in stages.items()},
                "per_frame": {k: v / n for k, v in counts.items()},
                "decided_per_frame": {k: v / n for k, v in decided.items()},
            }
    return out


def _print_report(result: dict[str, Any]) -> None:
    if "crops" in result:
        r = result["crops"]
        print(f"\n## crops: {r['n']} held-out cascade windows ({r['faces']} faces)")
        for name in ("tiny", "skipnet", "cascade"):
            print(f"  {name:8s} accuracy {r[name]['accuracy']:.4f}  "
                  f"{r[name]['flops'] / 1e6:7.3f} MFLOP/crop")
        print(f"  cascade deferred {r['cascade']['deferred']:.3f}; cost ratio vs SkipNet on all "
              f"{r['cost_ratio']:.3f}; time ratio {r['time_ratio']:.3f} "
              f"({r['ms_per_1000']['cascade']:.1f} vs {r['ms_per_1000']['skipnet']:.1f} "
              "ms per 1000 crops)")
    if "detection" in result:
        r = result["detection"]
        header = "  ".join(f"@{k:>3d}" for k in FP_COUNTS)
        print(f"\n## detection: {r['cascade']['curve']['faces']} faces, {r['images']} images")
        print(f"  {'detector':10s} {'recall':>7s} {'FP':>5s}   detection rate at FP  {header}")
        for name in ("cascade", "lenient", "pipeline", "opencv"):
            d, c = r[name]["min_neighbors_3"], r[name]["curve"]
            rates = "  ".join(f"{c['rate_at_fp'][str(k)]:.3f}" for k in FP_COUNTS)
            print(f"  {name:10s} {d['recall']:7.3f} {d['false_positives']:5d}   "
                  f"{'':21s} {rates}")
        print("  false positives at equal recall (min_neighbors 3 / 1 of the detector alone):")
        for key, t in r["target"].items():
            fp = t["pipeline_false_positives"]
            reduction = "unreached" if fp is None else f"{t['reduction']:.1f}x fewer"
            print(f"    {key:26s} recall {t['recall']:.3f}: {t['false_positives']:5d} FP alone, "
                  f"pipeline {fp} ({reduction})")
    if "timing" in result:
        for kind, r in result["timing"].items():
            print(f"\n## timing, {kind}: {r['frames']} frames 640x480, scale 1.2, min 48 px; "
                  f"cascade alone {r['cascade_ms']:.1f} ms")
            for name in ("pipeline", "pipeline, settled"):
                q = r[name]
                print(f"  {name}: {q['ms']:.1f} ms, ratio {q['ratio']:.2f} "
                      f"(CPU time ratio {q['cpu_ratio']:.2f})")
                print("    stages (ms/frame): " + ", ".join(
                    f"{k} {v:.2f}" for k, v in q["stage_ms"].items()))
                print("    per frame: " + ", ".join(
                    f"{k} {v:.1f}" for k, v in q["per_frame"].items()) + "; decided: "
                    + ", ".join(f"{k} {v:.1f}" for k, v in q["decided_per_frame"].items()))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads < 0:
        print("eval_verifier: --threads must be >= 0", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    only = set(args.only or ("crops", "detection", "timing"))
    try:
        verifier = load_face_verifier(args.models)
        if args.threshold is not None:
            verifier = FaceVerifier(verifier.tiny, verifier.skipnet, args.threshold)
        cascade_model = resolve_cascade(args.cascade)
        split = split_sources(args.data, seed=args.seed)
    except (FileNotFoundError, ValueError) as exc:
        print(f"eval_verifier: {exc}", file=sys.stderr)
        return 2
    cascade = vj.CascadeDetector(cascade_model).warmup()
    extra = {} if args.dedup_cell is None else {"dedup_cell": args.dedup_cell}
    pipeline = VerifiedDetector(cascade_model, verifier, stages=args.stages, **extra).warmup()
    result: dict[str, Any] = {"cascade": str(args.cascade), "stages": pipeline.stages,
                              "dedup_cell": pipeline.dedup_cell,
                              "threshold": verifier.threshold,
                              "torch_threads": torch.get_num_threads()}
    if "crops" in only:
        crops = build_crops(args, "eval", args.eval_backgrounds, args.eval_scenes)
        result["crops"] = eval_crops(verifier, crops)
    if "detection" in only:
        rng = np.random.default_rng([args.seed, 11])
        annotators = [vj.load(a) for a in ANNOTATORS]
        orl = orl_scenes(split.orl["eval"], annotators)
        scenes = make_scenes(split.backgrounds["eval"], split.caltech["eval"],
                             [(s.image, s.faces[0]) for s in orl], args.scenes, rng)
        result["detection"] = eval_detection(scenes + orl, cascade, pipeline)
        result["detection"]["images"] = len(scenes) + len(orl)
    if "timing" in only:
        result["timing"] = eval_timing(_frames(split, args.seed, args.frames), cascade,
                                       pipeline, args.repeats)
    _print_report(result)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
