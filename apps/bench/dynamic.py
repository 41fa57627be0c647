"""``vj-bench dynamic``: train small dynamic networks and measure FLOPs and time saved.

Run ``python -m vj_apps.bench.dynamic --json /tmp/dynamic.json`` (or ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vj_dynamic.bench.benchmark import BenchmarkConfig, format_report, run_benchmark, with_overrides
from vj_dynamic.bench.config import DATASETS
from vj_dynamic.bench.datasets import default_data_dir

from vj.atomic import atomic_write_text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vj-bench dynamic",
        description="Train SkipNet and an IDK cascade quickly, then report FLOPs (and their "
        "spread over the test set), latency and accuracy of dense versus dynamic execution, "
        "and sweep gate thresholds, batch sizes and threads for FLOPs saved against time saved.",
    )
    p.add_argument("--json", type=Path, help="write the results to this JSON file")
    p.add_argument("--quick", action="store_true", help="smaller, faster run (about a minute)")
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        default="graded",
        help="graded: digits at four corruption levels (default); digits: plain; faces: crops",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="shared data folder for --dataset faces (default: $VJ_DATA or ../shared/data)",
    )
    p.add_argument("--depth", type=int, help="SkipNet depth, 6n+2 (default 20)")
    p.add_argument("--gate", choices=("rnn", "ff1", "ff2"), help="gate kind (default rnn)")
    p.add_argument("--alpha", type=float, help="RL price of computation (default 0.6)")
    p.add_argument("--threads", type=int, help="PyTorch threads while timing (default 1)")
    p.add_argument("--train-threads", type=int, help="PyTorch threads while training (default 1)")
    p.add_argument("--repeats", type=int, help="timed rounds per comparison")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--plot", type=Path, help="save the IDK cost/accuracy frontier plot here")
    p.add_argument("--weights-dir", type=Path, help="save the trained networks' state dicts here")
    p.add_argument(
        "--figure", type=Path, help="save the systems figure (FLOPs saved vs time saved) here"
    )
    p.add_argument(
        "--no-sweep", action="store_true", help="skip the threshold x batch x threads sweep"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = _parser().parse_args(argv)
    if args.json is not None and not args.json.parent.is_dir():
        print(f"error: folder {args.json.parent} does not exist", file=sys.stderr)
        return 2
    data_dir = args.data if args.data is not None else default_data_dir()
    base = BenchmarkConfig.quick() if args.quick else BenchmarkConfig()
    config = with_overrides(
        base,
        dataset=args.dataset,
        data_dir=str(data_dir) if data_dir else None,
        depth=args.depth,
        gate=args.gate,
        alpha=args.alpha,
        timing_threads=args.threads,
        train_threads=args.train_threads,
        repeats=args.repeats,
        seed=args.seed,
        sweep_batch_sizes=() if args.no_sweep else None,
    )
    extra = {"figure": str(args.figure)} if args.figure else {}
    try:
        results = run_benchmark(
            config,
            log=lambda line: print(line, file=sys.stderr, flush=True),
            plot=str(args.plot) if args.plot else None,
            weights_dir=str(args.weights_dir) if args.weights_dir else None,
            **extra,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(results))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
