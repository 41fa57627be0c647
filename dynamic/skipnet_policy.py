"""What a trained SkipNet's policy does on a set of inputs: FLOPs spread and execution paths.

A SkipNet saves computation per input only if its gates decide differently for
different inputs. :func:`policy_report` runs the network (skip execution, the gate
threshold it has) and reports the per-sample FLOPs as a distribution (percentiles,
histogram), the distinct execution paths with the share of inputs on each, and, given
labels and a grouping (e.g. a difficulty level), accuracy and FLOPs per group: the
figures a model card needs to show that the policy depends on the input.

Examples
--------
>>> import torch
>>> from vj_dynamic.skipnet import SkipResNet
>>> net = SkipResNet(depth=8, num_classes=3, in_channels=1, widths=(4, 8, 8)).eval()
>>> report = policy_report(net, torch.randn(20, 1, 16, 16))
>>> report.n_paths, report.flops.shape
(1, (20,))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from vj_dynamic.skipnet import SkipResNet

__all__ = ["PolicyReport", "path_key", "policy_report"]


def path_key(executed: np.ndarray) -> np.ndarray:
    """Each row of ``executed`` ``(N, G)`` as a string of ``1`` (ran) and ``0`` (skipped)."""
    executed = np.asarray(executed, dtype=bool)
    if executed.ndim != 2:
        raise ValueError(f"executed must have shape (N, n_gates), got {executed.shape}")
    chars = np.where(executed, "1", "0")
    return np.array(["".join(row) for row in chars], dtype=f"<U{max(1, executed.shape[1])}")


@dataclass(frozen=True)
class PolicyReport:
    """Per-sample FLOPs and execution paths of a SkipNet on a set of inputs.

    Attributes
    ----------
    flops : (N,) ndarray of int64
        FLOPs of each input (gates included; the dense network runs ``dense_flops``).
    dense_flops : int
        FLOPs of the dense ResNet per input.
    executed : (N, G) ndarray of bool
        Which gated blocks ran for each input.
    threshold : float
        The gate threshold the report was made with.
    predictions : (N,) ndarray of int or None
        Predicted classes.
    """

    flops: np.ndarray
    dense_flops: int
    executed: np.ndarray
    threshold: float
    predictions: np.ndarray | None = None

    @property
    def flops_saved(self) -> float:
        """Fraction of the dense FLOPs saved on average."""
        return 1.0 - float(self.flops.mean()) / self.dense_flops

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of the per-sample FLOPs."""
        return float(np.percentile(self.flops, q))

    @property
    def spread(self) -> float:
        """``p90 / p10`` of the per-sample FLOPs: 1 when every input costs the same."""
        return self.percentile(90) / self.percentile(10)

    def paths(self) -> list[tuple[str, int]]:
        """Distinct execution paths (``"1"`` ran, ``"0"`` skipped), commonest first, with counts."""
        keys, counts = np.unique(path_key(self.executed), return_counts=True)
        order = np.lexsort((keys, -counts))
        return [(str(keys[i]), int(counts[i])) for i in order]

    @property
    def n_paths(self) -> int:
        """Number of distinct execution paths."""
        return len(self.paths())

    def histogram(self, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Counts and edges of the per-sample FLOPs, from the cheapest path to dense or more.

        Every sample is counted: a path that runs every block costs the dense FLOPs plus
        its gates'.
        """
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        low = min(float(self.flops.min()), float(self.dense_flops))
        high = max(float(self.flops.max()), float(self.dense_flops))
        return np.histogram(self.flops, bins=bins, range=(low, high))

    def by_group(self, groups: np.ndarray, labels: np.ndarray | None = None) -> list[dict]:
        """Mean FLOPs, execution rate and (with ``labels``) accuracy of each group of inputs."""
        groups = np.asarray(groups)
        if groups.shape != self.flops.shape:
            raise ValueError(f"groups must have shape {self.flops.shape}, got {groups.shape}")
        if labels is not None and self.predictions is None:
            raise ValueError("accuracy needs the predictions: make the report with labels")
        rows = []
        for g in np.unique(groups):
            sel = groups == g
            row = {
                "group": g.item() if hasattr(g, "item") else g,
                "n": int(sel.sum()),
                "flops_mean": float(self.flops[sel].mean()),
                "execution_rate": float(self.executed[sel].mean()),
            }
            if labels is not None:
                row["accuracy"] = float((self.predictions[sel] == np.asarray(labels)[sel]).mean())
            rows.append(row)
        return rows

    def to_dict(self, bins: int = 10, max_paths: int = 20) -> dict:
        """A JSON-ready summary: percentiles, histogram, paths and their shares."""
        counts, edges = self.histogram(bins)
        n = len(self.flops)
        return {
            "samples": n,
            "threshold": self.threshold,
            "flops_dense": float(self.dense_flops),
            "flops_mean": float(self.flops.mean()),
            "flops_saved": self.flops_saved,
            "flops_per_sample_p10": self.percentile(10),
            "flops_per_sample_p50": self.percentile(50),
            "flops_per_sample_p90": self.percentile(90),
            "p90_over_p10": self.spread,
            "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
            "paths": self.n_paths,
            "path_shares": [
                {"path": p, "share": c / n, "count": c} for p, c in self.paths()[:max_paths]
            ],
            "gate_execution_rate": self.executed.mean(axis=0).round(4).tolist(),
        }


@torch.no_grad()
def policy_report(
    model: SkipResNet,
    x: torch.Tensor,
    *,
    batch_size: int = 256,
) -> PolicyReport:
    """Run ``model`` (eval mode, skip execution) on ``x`` and report its policy.

    Parameters
    ----------
    model : SkipResNet
        A trained network; its current ``gate_threshold`` is used.
    x : (N, C, H, W) Tensor
        The inputs, e.g. held-out crops.
    batch_size : int, optional
        Inputs per forward pass (decisions do not depend on it).

    Returns
    -------
    PolicyReport
    """
    if not isinstance(model, SkipResNet):
        raise ValueError(f"model must be a SkipResNet, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty (N, C, H, W) tensor, got {getattr(x, 'shape', x)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model.eval()
    executed, predictions = [], []
    for start in range(0, x.shape[0], batch_size):
        out = model(x[start : start + batch_size], execution="skip", policy="hard")
        executed.append(out.executed)
        predictions.append(out.logits.argmax(1).cpu().numpy())
    executed_np = np.concatenate(executed)
    breakdown = model.flop_breakdown(*x.shape[2:])
    return PolicyReport(
        breakdown.dynamic(executed_np),
        int(breakdown.dense()),
        executed_np,
        model.gate_threshold,
        np.concatenate(predictions),
    )
