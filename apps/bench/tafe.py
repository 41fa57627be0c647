"""``vj-bench tafe``: few-shot face verification on unseen people, TAFE-Net vs two baselines.

Meta-trains a TAFE-Net head per fold of ORL people on the shipped face embedding
(``data/tafe.pt``), scores the unseen people's episodes with TAFE-Net, nearest-neighbour
cosine and a logistic regression on the K enrolment crops (ROC AUC and accuracy at
K = 1, 3, 5), then times the identification of a frame's faces::

    vj-bench tafe --json /tmp/tafe.json      # about 3 minutes on 2 cores
    vj-bench tafe --quick                    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vj-bench tafe", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, help="write the results to this JSON file")
    p.add_argument("--quick", action="store_true", help="two folds, few episodes: a smoke run")
    p.add_argument("--data", type=Path, help="shared data folder (default: $VJ_DATA or "
                                             "../shared/data)")
    p.add_argument("--model", type=Path, help="face-identity model (default: data/tafe.pt)")
    p.add_argument("--folds", type=int, help="person folds (default 4)")
    p.add_argument("--steps", type=int, help="meta-training steps per fold (default 800)")
    p.add_argument("--episodes", type=int, help="episodes per person and K (default 10)")
    p.add_argument("--train-threads", type=int, default=1,
                   help="PyTorch threads while meta-training (default: %(default)s)")
    p.add_argument("--seed", type=int, help="seed of the folds and episodes (default 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.json is not None and not args.json.parent.is_dir():
        print(f"error: folder {args.json.parent} does not exist", file=sys.stderr)
        return 2
    from dataclasses import replace

    from vj_dynamic.face.identity import load_identity_model, orl_identities
    from vj_dynamic.face.recognition_benchmark import (
        RecognitionBenchmarkConfig,
        format_recognition_report,
        run_recognition_benchmark,
    )

    from vj.atomic import atomic_write_text

    config = RecognitionBenchmarkConfig.quick() if args.quick else RecognitionBenchmarkConfig()
    overrides = {"folds": args.folds, "steps": args.steps, "episodes_per_person": args.episodes,
                 "seed": args.seed}
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    torch.set_num_threads(args.train_threads)
    try:
        model = load_identity_model(args.model)
        identities = orl_identities(args.data)
        results = run_recognition_benchmark(
            model, identities, config, log=lambda line: print(line, file=sys.stderr, flush=True))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_recognition_report(results))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
