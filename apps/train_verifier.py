"""``vj-train-verifier``: train the face verifiers and their IDK cascade, as shipped in ``data/``.

Builds the verifier crops from the shared data (image-level split, see
:mod:`vj_dynamic.face.sources`), trains the SkipNet and the tiny CNN and tunes the
cascade (:mod:`vj_dynamic.face.training`), then writes ``verifier_tiny.pt``,
``verifier_skipnet.pt`` and ``verifier_idk.pt`` to ``--out`` and a JSON report and the
cost / accuracy frontier plot to ``--workdir``.

Example
-------
::

    vj-train-verifier                       # the shipped models, into data/
    vj-train-verifier --out runs/verifier --max-backgrounds 100 --scenes 50 --quick
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

import vj
from vj.atomic import atomic_write_text
from vj.image_sources import read_gray
from vj.models import resolve

try:  # PyTorch: when it is missing, main() says so in one line instead of a traceback
    import torch
    from vj_dynamic.face.crop_sets import CropSet, assemble_crops
    from vj_dynamic.face.crops import CROP_MARGIN, CROP_SIZE, CROPS_VERSION
    from vj_dynamic.face.pipeline import TRAINING_SHARE, lenient_stages, resolve_cascade
    from vj_dynamic.face.scenes import make_scenes, orl_scenes
    from vj_dynamic.face.sources import split_sources
    from vj_dynamic.face.training import (
        VerifierTrainConfig,
        mine_hard_negatives,
        train_verifiers,
    )
    from vj_dynamic.face.wider_crops import augmented_copies, wider_positives, wider_windows
    from vj_dynamic.idk_tuning import OperatingPoint, plot_frontier
except ImportError as error:
    _MISSING: ImportError | None = error
else:
    _MISSING = None

__all__ = ["ANNOTATORS", "CASCADES", "bootstrap", "build_crops", "build_parser", "main"]

#: Cascades whose windows the shipped verifiers learn from: the project's own and
#: OpenCV's default, so that the verifiers serve either.
CASCADES = ("frontalface", "opencv:default")
#: Cascades that box the ORL faces (see :func:`vj_dynamic.face.sources.orl_face_box`).
ANNOTATORS = ("opencv:default", "opencv:alt", "opencv:alt2")
_REPO = Path(__file__).resolve().parent.parent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vj-train-verifier",
        description="Train the neural face verifiers (tiny CNN + SkipNet IDK cascade).",
    )
    p.add_argument("--data", default=None, metavar="DIR",
                   help="shared face data (default: $VJ_DATA or ../shared/data)")
    p.add_argument("--out", default=str(_REPO / "data"), metavar="DIR",
                   help="where the weight files go (default: the repository's data/)")
    p.add_argument("--workdir", default=str(_REPO / "runs" / "verifier"), metavar="DIR",
                   help="crop cache, report and plot (default: runs/verifier)")
    p.add_argument("--cascade", nargs="+", default=list(CASCADES), metavar="NAME|PATH",
                   help="cascades whose lenient windows (a TRAINING_SHARE of "
                   "their stages) "
                   f"are verified; the union of their windows (default: {' '.join(CASCADES)})")
    p.add_argument("--max-backgrounds", type=int, default=700,
                   help="background photos mined for training negatives")
    p.add_argument("--scenes", type=int, default=500, help="composite training scenes")
    p.add_argument("--tune-backgrounds", type=int, default=200)
    p.add_argument("--tune-scenes", type=int, default=150)
    p.add_argument("--bootstrap-backgrounds", type=int, default=None,
                   help="training photos searched for the verifiers' mistakes before the "
                   "second round (default: all of them; 0: one round only)")
    p.add_argument("--bootstrap-scenes", type=int, default=300,
                   help="fresh training scenes searched for mistakes")
    p.add_argument("--wider-per-face", type=int, default=2,
                   help="jittered crops per real face in context (faces/wider_train; "
                   "0: none)")
    p.add_argument("--wider-windows", type=int, default=6,
                   help="the cascades' own windows kept per real face (default 6)")
    p.add_argument("--augment-share", type=float, default=0.3,
                   help="degraded copies (vj.augment) of this share of the training faces "
                   "and of the training non-faces (default 0.3; 0: none)")
    p.add_argument("--hard-positives", type=int, default=3,
                   help="per real training face, windows the first-round verifiers "
                   "wrongly reject, added as faces for the second round (default 3)")
    p.add_argument("--stages", type=int, nargs="+", default=None,
                   help="cascade stages whose windows are verified, one per --cascade "
                   "(default: TRAINING_SHARE of each)")
    p.add_argument("--quick", action="store_true",
                   help="one epoch per phase (a smoke test, not a useful model)")
    p.add_argument("--rl-alpha", type=float, default=VerifierTrainConfig.rl_alpha)
    p.add_argument("--idk-eps", type=float, default=VerifierTrainConfig.idk_eps,
                   help="relative accuracy the IDK cascade may give up against the SkipNet "
                   f"on the tuning crops (default: {VerifierTrainConfig.idk_eps})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default: 1; results depend on the thread count, "
                        "see data/verifier.md)")
    return p


def _training_cascades(args: argparse.Namespace) -> tuple[list[str], list[vj.Cascade], list[int]]:
    """Names, cascades and training stage counts (:data:`TRAINING_SHARE`) of ``--cascade``."""
    names = [args.cascade] if isinstance(args.cascade, str) else list(args.cascade)
    cascades = [resolve_cascade(c) for c in names]
    stages = getattr(args, "stages", None)
    if stages is None:
        return names, cascades, [lenient_stages(c, TRAINING_SHARE) for c in cascades]
    if len(stages) != len(cascades) or not all(
            1 <= s <= c.n_stages for s, c in zip(stages, cascades, strict=True)):
        raise ValueError(f"--stages needs one count per cascade within its stages, "
                         f"got {stages} for {names}")
    return names, cascades, list(stages)


def _detectors(cascades: list[vj.Cascade], stages: list[int]) -> list[vj.CascadeDetector]:
    return [vj.CascadeDetector(c.truncated(s)) for c, s in zip(cascades, stages, strict=True)]


def build_crops(args: argparse.Namespace, part: str, n_backgrounds: int, n_scenes: int,
                log=print) -> CropSet:
    """The crops of one part, cached in the workdir under the settings that made them."""
    _, cascades, stages = _training_cascades(args)
    cache = Path(args.workdir) / _cache_name(args, part, n_backgrounds, n_scenes)
    if cache.is_file():
        with np.load(cache) as d:
            log(f"{part}: crops from {cache}")
            return CropSet(d["crops"], d["labels"], d["sources"])
    t0 = time.perf_counter()
    split = split_sources(args.data, seed=args.seed)
    detectors = _detectors(cascades, stages)
    annotators = [vj.load(a) for a in ANNOTATORS]
    rng = np.random.default_rng([args.seed, ("train", "tune", "eval").index(part)])
    crops = assemble_crops(split, part, detectors, annotators, rng,
                           max_backgrounds=n_backgrounds, n_scenes=n_scenes)
    crops = _add_real_faces(args, split, part, detectors, rng, crops)
    log(f"{part}: {len(crops)} crops {crops.counts()} in {time.perf_counter() - t0:.0f} s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, crops=crops.crops, labels=crops.labels, sources=crops.sources)
    tmp.replace(cache)
    return crops


def _cache_name(args: argparse.Namespace, part: str, n_backgrounds: int, n_scenes: int) -> str:
    """The file name of one part's crops: every setting that decides them."""
    names, _, stages = _training_cascades(args)
    tag = "+".join(f"{Path(str(n)).stem.replace(':', '_')}-s{s}" for n, s in
                   zip(names, stages, strict=True))
    geometry = f"c{CROP_SIZE}m{CROP_MARGIN}v{CROPS_VERSION}"
    return (f"crops-{part}-{tag}-{geometry}-b{n_backgrounds}-n{n_scenes}"
            f"{_real_tag(args, part)}-seed{args.seed}.npz")


def _real_tag(args: argparse.Namespace, part: str) -> str:
    """The cache-name part of the real-face settings (empty when none are used)."""
    wider = getattr(args, "wider_per_face", 0)
    share = getattr(args, "augment_share", 0.0) if part == "train" else 0.0
    tag = f"-w{wider}x{args.wider_windows}" if wider else ""
    return tag + (f"-a{share:g}" if share else "")


def _add_real_faces(args, split, part, detectors, rng, crops: CropSet) -> CropSet:
    """Real faces in context (and, for training, degraded copies of everything)."""
    parts = [crops]
    if getattr(args, "wider_per_face", 0):
        faces = split.wider_faces(part)
        parts += [wider_positives(faces, rng, per_face=args.wider_per_face),
                  wider_windows(faces, detectors, rng, max_per_face=args.wider_windows)]
    crops = CropSet.concatenate(parts)
    share = getattr(args, "augment_share", 0.0)
    if part == "train" and share:
        crops = CropSet.concatenate([crops, augmented_copies(crops, share, rng)])
    return crops


def hard_positives(args: argparse.Namespace, verifier, detectors, split,
                   rng: np.random.Generator) -> CropSet:
    """Windows on real training faces that the verifiers wrongly reject, as faces."""
    if not getattr(args, "hard_positives", 0):
        return CropSet.concatenate([])
    windows = wider_windows(split.wider_faces("train"), detectors, rng,
                            max_per_face=4 * args.hard_positives)
    rejected = np.flatnonzero(~verifier.verify(windows.crops).is_face)
    # At most hard_positives per face on average: a random subset of the rejected.
    limit = args.hard_positives * len(split.wider["train"])
    if rejected.size > limit:
        rejected = np.sort(rng.choice(rejected, limit, replace=False))
    n = rejected.size
    return CropSet(windows.crops[rejected], np.ones(n, np.int64),
                   np.full(n, "hard_pos", dtype="<U10"))


def bootstrap(args: argparse.Namespace, verifier) -> CropSet:
    """The trained verifiers' false positives on training photos and fresh training scenes."""
    _, cascades, stages = _training_cascades(args)
    detectors = _detectors(cascades, stages)
    split = split_sources(args.data, seed=args.seed)
    rng = np.random.default_rng([args.seed, 3])
    backgrounds = list(split.backgrounds["train"])
    if args.bootstrap_backgrounds is not None and len(backgrounds) > args.bootstrap_backgrounds:
        pick = rng.choice(len(backgrounds), args.bootstrap_backgrounds, replace=False)
        backgrounds = [backgrounds[i] for i in np.sort(pick)]
    none = np.zeros((0, 4))
    photos = mine_hard_negatives(((read_gray(p), none) for p in backgrounds), detectors,
                                 verifier, rng)
    annotators = [vj.load(a) for a in ANNOTATORS]
    orl = [(s.image, s.faces[0]) for s in orl_scenes(split.orl["train"], annotators)]
    scenes = make_scenes(split.backgrounds["train"], split.caltech["train"], orl,
                         args.bootstrap_scenes, rng) if args.bootstrap_scenes else []
    in_scenes = mine_hard_negatives(((s.image, s.faces) for s in scenes), detectors,
                                    verifier, rng)
    faces = hard_positives(args, verifier, detectors, split, rng)
    return CropSet.concatenate([photos, in_scenes, faces])


def _missing_cascade(args: argparse.Namespace) -> str | None:
    """A cascade the run needs (``--cascade``, :data:`ANNOTATORS`) that is missing; else None.

    Checked up front: a run that finds its crops cached first needs the annotators late.
    """
    for name in [*args.cascade, *ANNOTATORS]:
        try:
            resolve(name)
        except FileNotFoundError as error:
            return str(error)
    return None


def _first_round(args, config, train: CropSet, tune: CropSet) -> tuple[CropSet, dict]:
    """Train once and mine the mistakes, or read them from the work folder.

    The hard crops and the first round's summary are kept in the work folder under
    the settings that made them, so a run killed in the second round starts there.
    """
    key = json.dumps([asdict(config), _cache_name(args, "train", args.max_backgrounds,
                                                  args.scenes),
                      args.bootstrap_backgrounds, args.bootstrap_scenes, args.hard_positives])
    cache = Path(args.workdir) / f"hard-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as d:
            print(f"bootstrap: mistakes of the first round from {cache}", file=sys.stderr)
            first = json.loads(d["summary"].tobytes().decode())
            return CropSet(d["crops"], d["labels"], d["sources"]), first
    verifier, report = train_verifiers(train, tune, config)
    t1 = time.perf_counter()
    hard = bootstrap(args, verifier)
    n_pos = int(hard.labels.sum())
    print(f"bootstrap: {len(hard) - n_pos} windows the verifiers wrongly accept, {n_pos} "
          f"real faces they wrongly reject ({time.perf_counter() - t1:.0f} s); training "
          "again", file=sys.stderr)
    first = {"idk": {k: v for k, v in report["idk"].items() if k != "frontier"},
             "skipnet_tune_accuracy": {k: report["skipnet"][k]["tune_accuracy"]
                                       for k in ("dense", "gates", "rl")
                                       if k in report["skipnet"]}}
    summary = np.frombuffer(json.dumps(first, default=float).encode(), np.uint8)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, crops=hard.crops, labels=hard.labels, sources=hard.sources,
                        summary=summary)
    tmp.replace(cache)
    return hard, json.loads(summary.tobytes().decode())


def main(argv: list[str] | None = None) -> int:
    if _MISSING is not None:  # before the parser: its defaults read the verifier settings
        print(f"vj-train-verifier: needs PyTorch ({_MISSING}); pip install torch",
              file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    problem = _missing_cascade(args)
    if problem is not None:
        print(f"vj-train-verifier: {problem}", file=sys.stderr)
        return 2
    if args.threads < 1:
        print("vj-train-verifier: --threads must be >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    try:
        config = VerifierTrainConfig(rl_alpha=args.rl_alpha, idk_eps=args.idk_eps,
                                     seed=args.seed)
    except ValueError as exc:
        print(f"vj-train-verifier: {exc}", file=sys.stderr)
        return 2
    if args.quick:
        config = replace(config, dense_epochs=1, gate_epochs=1, rl_epochs=1, tiny_epochs=1)
    t0 = time.perf_counter()
    try:
        train = build_crops(args, "train", args.max_backgrounds, args.scenes)
        tune = build_crops(args, "tune", args.tune_backgrounds, args.tune_scenes)
    except (FileNotFoundError, ValueError) as exc:
        print(f"vj-train-verifier: {exc}", file=sys.stderr)
        return 2
    data_seconds = time.perf_counter() - t0
    if args.bootstrap_backgrounds != 0:
        hard, first = _first_round(args, config, train, tune)
        n_pos = int(hard.labels.sum())
        verifier, report = train_verifiers(CropSet.concatenate([train, hard]), tune, config)
        report["first_round"] = {**first, "hard_negatives": len(hard) - n_pos,
                                 "hard_positives": n_pos}
    else:
        verifier, report = train_verifiers(train, tune, config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    verifier.save(out)
    report["seconds"]["data"] = data_seconds
    report["seconds"]["total"] = time.perf_counter() - t0
    report["command"] = "vj-train-verifier " + " ".join(sys.argv[1:] if argv is None else argv)
    report["cascades"] = [str(c) for c in args.cascade]
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(work / "report.json", json.dumps(report, indent=1, default=float) + "\n")
    idk = report["idk"]
    frontier = [OperatingPoint(tuple(p["thresholds"]), p["accuracy"], p["cost"])
                for p in idk["frontier"]]
    plot = plot_frontier(
        frontier, work / "frontier.partial.png",
        singles=[("tiny CNN", idk["tiny_flops"], idk["tiny_accuracy"]),
                 ("SkipNet", idk["skipnet_flops"], idk["skipnet_accuracy"])],
        chosen=OperatingPoint((idk["threshold"],), idk["cascade_accuracy"], idk["cascade_flops"]))
    plot.replace(work / "frontier.png")
    print(f"vj-train-verifier: weights in {out}, report in {work / 'report.json'} "
          f"({report['seconds']['total'] / 60:.1f} min)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
