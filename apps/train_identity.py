"""``python -m vj_apps.train_identity``: train the face-identity model behind enrolment.

Trains the self-supervised face embedding on the shared data's Caltech crops (resumable
from ``--workdir``), meta-trains the TAFE-Net head on ORL people and chooses its
threshold on held-out ORL people, then writes the model (``data/tafe.pt`` by default)
and a JSON summary for the model card (``data/tafe.md``) into the work folder::

    python -m vj_apps.train_identity --workdir runs/identity
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from vj.atomic import atomic_write_text
from vj.models import data_dir


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vj_apps.train_identity",
                                description="Train the face-identity model (backbone + "
                                            "TAFE-Net head) behind face enrolment.")
    p.add_argument("--data", type=Path, help="shared data folder (default: $VJ_DATA or "
                                             "../shared/data)")
    p.add_argument("--out", type=Path, default=None,
                   help="model file to write (default: data/tafe.pt)")
    p.add_argument("--workdir", type=Path, default=Path("runs/identity"),
                   help="checkpoints; an interrupted run resumes from here (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=12, help="backbone epochs (default: %(default)s)")
    p.add_argument("--steps", type=int, default=800,
                   help="head meta-training steps (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="PyTorch threads (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    from vj_dynamic.face.embedding import EmbedderTrainConfig
    from vj_dynamic.face.identity import MODEL_FILE
    from vj_dynamic.face.identity_training import train_identity_model
    from vj_dynamic.tafe_training import TafeTrainConfig
    from vj_dynamic.weights import save_weights

    out = args.out or data_dir() / MODEL_FILE
    if not out.parent.is_dir():
        print(f"error: folder {out.parent} does not exist", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    try:
        model, summary = train_identity_model(
            args.data, args.workdir, embedder_config=EmbedderTrainConfig(epochs=args.epochs),
            head_config=TafeTrainConfig(steps=args.steps),
            log=lambda line: print(line, file=sys.stderr, flush=True))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    save_weights(model, out)
    summary |= {"minutes": round((time.perf_counter() - started) / 60, 1),
                "epochs": args.epochs, "steps": args.steps, "threads": args.threads,
                "torch": torch.__version__}
    atomic_write_text(args.workdir / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(f"model written to {out} ({out.stat().st_size // 1024} KiB); summary in "
          f"{args.workdir / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
