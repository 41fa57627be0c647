"""Running detectors over a photo set, in parallel, with every photo's windows cached.

The expensive part of evaluating a detector is scanning (and, for the verified
pipeline, judging) every window; grouping the accepted windows at some
``min_neighbors`` is cheap. So a *run* stores, per photo, the windows a cascade
accepts (and the verifiers' face probability of each) under a key made of everything
that decides them: the model files' contents, the stage count, the scan settings and
:data:`RUN_VERSION`. Any number of operating points are then grouped from the cache
(:func:`detections`), and a killed run resumes where it stopped.

Photos are scanned by a pool of worker processes (one thread each), a chunk at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from vj.detector import GROUP_EPS, SCORE_STAGES, SCORES, clip_boxes
from vj.grouping import group_max, group_rectangles
from vj.models import resolve

__all__ = ["RUN_VERSION", "DetectorSpec", "detections", "parse_spec", "run_windows"]

#: Raised whenever what a run stores changes, so that old caches are not reused.
RUN_VERSION = 1
_CHUNK = 8


@dataclass(frozen=True)
class DetectorSpec:
    """A detector at one operating point.

    Attributes
    ----------
    kind : {"cascade", "verified"}
        The cascade alone (scores: stage margins, as ``CascadeDetector.detect``'s) or
        the verified pipeline (scores: face evidence).
    cascade : str
        Built-in name or path of the cascade.
    stages : int or None
        Cascade stages to run (``None``: all for a cascade, the pipeline's default
        for the verified detector).
    min_neighbors : int
    accept : float
        Verified only: face probability above which a window votes.
    models : str or None
        Verified only: folder of the verifier weights (``None``: the shipped ones).
    name : str
        Label in tables and plots.
    score : {"margin", "neighbors"}
        Cascade only: rank by stage margins or by neighbour counts (OpenCV's
        ``detectMultiScale2``), as ``CascadeDetector.detect``'s ``score``.
    step : int or None
        Smallest window step of the scan (``CascadeDetector``'s ``min_step``;
        ``None``: 1 for a cascade, the pipeline's default for the verified detector).
    """

    kind: str
    cascade: str
    stages: int | None
    min_neighbors: int
    accept: float = 0.5
    models: str | None = None
    name: str = ""
    score: str = "margin"
    step: int | None = None

    def stage_count(self) -> int | None:
        """The stages the scan runs (``None``: all of a cascade alone)."""
        if self.stages is not None or self.kind == "cascade":
            return self.stages
        from vj_dynamic.face.pipeline import lenient_stages, resolve_cascade

        return lenient_stages(resolve_cascade(self.cascade))

    def scan_step(self) -> int:
        """The window step the scan uses."""
        if self.step is not None:
            return self.step
        if self.kind == "cascade":
            return 1
        from vj_dynamic.face.pipeline import PROPOSER_STEP

        return PROPOSER_STEP


def parse_spec(text: str, *, cascade_neighbors: int = 1, verified_neighbors: int = 3,
               models: str | None = None) -> DetectorSpec:
    """``[verified:]CASCADE[@STAGES][,mn=N][,accept=P][,models=DIR][,score=S][,step=K][,name=TEXT]``.

    Examples: ``opencv:alt``, ``opencv:alt,score=neighbors``, ``frontalface@16,mn=0``,
    ``verified:frontalface@8,mn=1``, ``verified:frontalface,step=1``.

    Raises
    ------
    ValueError
        For an unknown option or a malformed value, naming it.
    """
    head, *options = text.split(",")
    kind = "cascade"
    if head.startswith("verified:"):
        kind, head = "verified", head[len("verified:"):]
    cascade, _, stages = head.partition("@")
    if not cascade:
        raise ValueError(f"detector spec {text!r} names no cascade")
    values = {"mn": str(cascade_neighbors if kind == "cascade" else verified_neighbors),
              "accept": "0.5", "models": models, "name": "", "score": "margin", "step": None}
    for opt in options:
        key, eq, value = opt.partition("=")
        if not eq or key not in values:
            raise ValueError(f"detector spec {text!r}: unknown option {opt!r} "
                             "(options: mn=N, accept=P, models=DIR, score=S, step=K, "
                             "name=TEXT)")
        values[key] = value
    try:
        n_stages = int(stages) if stages else None
        mn, accept = int(values["mn"]), float(values["accept"])
        step = None if values["step"] is None else int(values["step"])
    except ValueError:
        raise ValueError(f"detector spec {text!r}: stages, mn and step must be integers, "
                         "accept a number") from None
    if ((n_stages is not None and n_stages < 1) or mn < 0 or not 0 <= accept < 1
            or (step is not None and step < 1)):
        raise ValueError(f"detector spec {text!r}: need stages >= 1, mn >= 0, 0 <= accept < 1, "
                         "step >= 1")
    if kind == "cascade" and (values["models"] is not None and values["models"] != models):
        raise ValueError(f"detector spec {text!r}: models= applies to verified detectors only")
    if values["score"] not in SCORES or (kind == "verified" and values["score"] != "margin"):
        raise ValueError(f"detector spec {text!r}: score= is one of {', '.join(SCORES)}, "
                         "for a cascade alone")
    name = values["name"] or text
    return DetectorSpec(kind, cascade, n_stages, mn, accept,
                        values["models"] if kind == "verified" else None, name, values["score"],
                        step)


def _file_digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def _verifier_files(models: str | None) -> list[Path]:
    from vj.models import data_dir

    folder = Path(models) if models else data_dir()
    names = ("verifier_tiny.pt", "verifier_skipnet.pt", "verifier_idk.pt")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"verifier files {missing} not found in {folder}")
    return [folder / n for n in names]


def run_key(spec: DetectorSpec, scale_factor: float, min_size: int | None) -> str:
    """The cache key of a spec's windows: model contents and every scan setting."""
    parts = {"version": RUN_VERSION, "kind": spec.kind, "stages": spec.stage_count(),
             "cascade": _file_digest([resolve(spec.cascade)]),
             "scale_factor": scale_factor, "min_size": min_size, "step": spec.scan_step()}
    if spec.kind == "verified":
        parts["verifier"] = _file_digest(_verifier_files(spec.models))
    else:
        parts["score_stages"] = SCORE_STAGES
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


_DETECTORS: dict = {}


def _init_worker() -> None:
    import numba

    import vj  # noqa: F401  (starts Numba's threads before PyTorch can load)

    numba.set_num_threads(1)


def _detector(spec: DetectorSpec):
    key = (spec.kind, spec.cascade, spec.stages, spec.models, spec.scan_step())
    if key not in _DETECTORS:
        import vj

        if spec.kind == "cascade":
            cascade = vj.load_cascade(spec.cascade)
            if spec.stages is not None:
                cascade = cascade.truncated(min(spec.stages, cascade.n_stages))
            _DETECTORS[key] = vj.CascadeDetector(cascade, min_step=spec.scan_step())
        else:
            import torch
            from vj_dynamic.face.pipeline import VerifiedDetector
            from vj_dynamic.face.verifier import load_face_verifier

            torch.set_num_threads(1)
            _DETECTORS[key] = VerifiedDetector(spec.cascade, load_face_verifier(spec.models),
                                               stages=spec.stages, step=spec.scan_step())
    return _DETECTORS[key]


def _scan_chunk(spec: DetectorSpec, paths: list[str], scale_factor: float,
                min_size: int | None) -> list[dict]:
    """Windows (and verdicts) of each photo of a chunk."""
    import time

    from vj.image_sources import read_gray

    det = _detector(spec)
    out = []
    for path in paths:
        gray = read_gray(path)
        t0 = time.perf_counter()
        if spec.kind == "cascade":
            k = min(SCORE_STAGES, det.cascade.n_stages)
            windows, margins = det.candidates(gray, scale_factor, min_size, margin_stages=k)
            item = {"windows": windows, "margin": margins.sum(axis=1)}
        else:
            w, p, s = det.judge(gray, scale_factor, min_size)
            item = {"windows": w, "probability": p.astype(np.float32),
                    "stage": s.astype(np.int8)}
        item["ms"] = np.float64((time.perf_counter() - t0) * 1e3)
        item["shape"] = np.asarray(gray.shape, np.int64)
        out.append(item)
    return out


def _cache_file(folder: Path, root: Path, path: Path) -> Path:
    rel = os.path.relpath(path, root).replace(os.sep, "__")
    return folder / f"{rel}.npz"


def run_windows(
    spec: DetectorSpec,
    root: Path,
    paths: Sequence[Path],
    workdir: Path,
    *,
    scale_factor: float = 1.1,
    min_size: int | None = None,
    workers: int = 2,
    progress: Callable | None = None,
) -> list[dict]:
    """Every photo's windows (and verdicts) under ``spec``, computed or from the cache.

    Parameters
    ----------
    spec : DetectorSpec
    root : Path
        The photo set's folder (cache files are named by the path below it).
    paths : sequence of Path
    workdir : Path
        Cache folder; each run key gets a subfolder with one file per photo.
    scale_factor, min_size : optional
        The scan.
    workers : int
        Worker processes (1: scan in this process).
    progress : callable, optional
        ``progress(n)`` after every ``n`` photos done.

    Returns
    -------
    list of dict
        Per photo: ``windows`` (N, 4) int32, ``shape``, ``ms`` and, for a verified
        spec, ``probability`` (N,) and ``stage`` (N,).
    """
    folder = Path(workdir) / run_key(spec, scale_factor, min_size)
    folder.mkdir(parents=True, exist_ok=True)
    meta = folder / "spec.json"
    if not meta.is_file():
        meta.write_text(json.dumps({**asdict(spec), "scale_factor": scale_factor,
                                    "min_size": min_size}, indent=1) + "\n")
    files = [_cache_file(folder, root, p) for p in paths]
    todo = [i for i, f in enumerate(files) if not f.is_file()]
    if todo:
        chunks = [todo[i:i + _CHUNK] for i in range(0, len(todo), _CHUNK)]

        def store(chunk: list[int], items: list[dict]) -> None:
            for i, item in zip(chunk, items, strict=True):
                tmp = files[i].with_suffix(".tmp.npz")
                np.savez(tmp, **item)
                os.replace(tmp, files[i])
            if progress is not None:
                progress(len(chunk))

        args = [(spec, [str(paths[i]) for i in c], scale_factor, min_size) for c in chunks]
        if workers <= 1:
            _init_worker()
            for c, a in zip(chunks, args, strict=True):
                store(c, _scan_chunk(*a))
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                                     initializer=_init_worker) as pool:
                futures = [pool.submit(_scan_chunk, *a) for a in args]
                for c, f in zip(chunks, futures, strict=True):
                    store(c, f.result())
    out = []
    for f in files:
        with np.load(f, allow_pickle=False) as d:
            out.append({k: d[k] for k in d.files})
    return out


def detections(spec: DetectorSpec, runs: Sequence[dict]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each photo's boxes and scores at the spec's operating point, grouped from a run."""
    out = []
    for item in runs:
        windows, shape = item["windows"], tuple(item["shape"])
        if spec.kind == "cascade":
            # The score of CascadeDetector.detect: the best window's summed margins.
            boxes, counts, labels = group_rectangles(windows, spec.min_neighbors, GROUP_EPS,
                                                     return_labels=True)
            scores = (group_max(labels, len(boxes), item["margin"]) if spec.score == "margin"
                      else counts.astype(np.float64))
            boxes, scores = clip_boxes(boxes, scores, shape)
        else:
            from vj_dynamic.face.pipeline import group_windows

            boxes, scores, _ = group_windows(windows, item["probability"], item["stage"],
                                             spec.min_neighbors, shape, spec.accept)
        out.append((boxes, np.asarray(scores, np.float64)))
    return out
