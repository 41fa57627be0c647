"""``vj-detect``: detect faces (or any cascade's objects) in images, write JSON.

Examples
--------
::

    vj-detect photos/ --json faces.json
    vj-detect a.jpg b.png --json out.json --cascade opencv:alt2 --draw annotated/
    vj-detect photos/ --json faces.json --verify      # cascade + neural verifiers
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

import vj
from vj.atomic import atomic_write_text
from vj.image_sources import IMAGE_SUFFIXES
from vj.models import DEFAULT_MODEL, load_default_cascade

__all__ = ["IMAGE_SUFFIXES", "build_parser", "collect_images", "main", "parse_size"]

DEFAULT_CASCADE = DEFAULT_MODEL


def parse_size(text: str) -> tuple[int, int]:
    """``"40"`` or ``"40x30"`` -> ``(40, 40)`` / ``(40, 30)``."""
    try:
        parts = [int(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or WxH, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 0:
        raise argparse.ArgumentTypeError(f"expected N or WxH with N >= 0, got {text!r}")
    return parts[0], parts[1]


def collect_images(inputs: list[str]) -> list[tuple[Path, str]]:
    """(file, JSON key) pairs: directories are searched recursively for images.

    A file inside a directory argument is keyed by its path relative to that
    directory; a file argument by the path exactly as given.
    """
    out: list[tuple[Path, str]] = []
    for arg in inputs:
        path = Path(arg)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            out += [(p, p.relative_to(path).as_posix()) for p in files]
        else:
            out.append((path, arg))
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vj-detect", description="Detect faces in images and write the boxes as JSON."
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGES_OR_DIRS")
    p.add_argument("--json", required=True, metavar="OUT",
                   help='output: {"<image>": [[x, y, w, h, score], ...], ...}')
    p.add_argument("--cascade", default=None, metavar="NAME|PATH",
                   help=f"built-in name ({', '.join(sorted(vj.BUILTIN))}), an OpenCV Haar XML "
                   f"or an own model file (default: {DEFAULT_CASCADE})")
    p.add_argument("--scale-factor", type=float, default=1.1)
    p.add_argument("--min-neighbors", type=int, default=3)
    p.add_argument("--min-size", type=parse_size, default=None, metavar="N|WxH")
    p.add_argument("--max-size", type=parse_size, default=None, metavar="N|WxH")
    p.add_argument("--draw", metavar="DIR", help="also write annotated copies here")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=False,
                   help="check the cascade's windows with the built-in neural verifiers "
                   "(vj_dynamic.face.pipeline); scores become the verified windows' evidence")
    return p


def _load(cascade: str | None):
    if cascade is not None:
        return vj.load(cascade)
    model, _, notice = load_default_cascade()
    if notice:
        print(f"vj-detect: {notice}", file=sys.stderr)
    return vj.load(model)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        det = _load(args.cascade)
        if args.verify:
            # Imported here: PyTorch loads only when verification is asked for.
            from vj_dynamic.face.pipeline import load_verifier

            det = load_verifier(det)
    except (FileNotFoundError, ValueError) as exc:
        print(f"vj-detect: {exc}", file=sys.stderr)
        return 2
    images = collect_images(args.inputs)
    results: dict[str, list[list[float]]] = {}
    failed = 0
    draw_dir = Path(args.draw) if args.draw else None
    for path, key in images:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            print(f"vj-detect: skipping unreadable image {path}", file=sys.stderr)
            failed += 1
            continue
        if img.dtype != np.uint8:  # 16-bit PNG/TIFF: scale to 8 bits
            img = cv2.convertScaleAbs(img, alpha=255.0 / max(float(img.max()), 1.0))
        try:
            boxes, scores = det.detect(img, scale_factor=args.scale_factor,
                                       min_neighbors=args.min_neighbors,
                                       min_size=args.min_size, max_size=args.max_size,
                                       return_scores=True)
        except ValueError as exc:
            print(f"vj-detect: {path}: {exc}", file=sys.stderr)
            return 2
        results[key] = [[*map(int, b), float(s)] for b, s in zip(boxes, scores, strict=True)]
        if draw_dir is not None:
            _draw(img, boxes, draw_dir / key)
    atomic_write_text(args.json, json.dumps(results, indent=1) + "\n")
    n_boxes = sum(len(v) for v in results.values())
    print(f"vj-detect: {len(results)} images, {n_boxes} detections, {failed} unreadable "
          f"-> {args.json}", file=sys.stderr)
    return 0 if results or not images else 1


def _draw(img: np.ndarray, boxes: np.ndarray, out: Path) -> None:
    if img.ndim == 2 or img.shape[2] == 1:
        canvas = cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        canvas = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    else:
        canvas = img.copy()
    for x, y, w, h in boxes.tolist():
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 255, 0), 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out.with_suffix(".png") if out.suffix.lower() == ".pgm" else out),
                       canvas):
        print(f"vj-detect: could not write {out}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
