"""``vj-bench nmn``: neural module networks on SHAPES against a monolithic peer.

Draws a SHAPES-style question set, trains a neural module network and a CNN + GRU
network of the same parameter budget, reports their test accuracy and the throughput
of batched execution (questions grouped by layout) against one question at a time::

    vj-bench nmn --json /tmp/nmn.json        # about 2 minutes on 2 cores
    vj-bench nmn --quick                     # a smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vj-bench nmn", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, help="write the results to this JSON file")
    p.add_argument("--quick", action="store_true", help="small set, two epochs: a smoke run")
    p.add_argument("--epochs", type=int, help="training epochs of both networks (default 8)")
    p.add_argument("--train-images", type=int, help="training images (default 1500)")
    p.add_argument("--repeats", type=int, help="timed rounds (default 7)")
    p.add_argument("--threads", type=int, help="PyTorch threads while timing (default 1)")
    p.add_argument("--train-threads", type=int, default=1,
                   help="PyTorch threads while training (default: %(default)s)")
    p.add_argument("--seed", type=int, help="seed of the data and the weights (default 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.json is not None and not args.json.parent.is_dir():
        print(f"error: folder {args.json.parent} does not exist", file=sys.stderr)
        return 2
    from dataclasses import replace

    from vj_dynamic.bench.nmn_benchmark import (
        NMNBenchmarkConfig,
        format_nmn_report,
        run_nmn_benchmark,
    )

    from vj.atomic import atomic_write_text

    config = NMNBenchmarkConfig.quick() if args.quick else NMNBenchmarkConfig()
    overrides = {"epochs": args.epochs, "n_train": args.train_images, "repeats": args.repeats,
                 "threads": args.threads, "seed": args.seed}
    try:
        config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
        torch.set_num_threads(args.train_threads)
        results = run_nmn_benchmark(config, log=lambda line: print(line, file=sys.stderr,
                                                                    flush=True))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_nmn_report(results))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
