"""The learned SkipNet policy on the test set: FLOPs spread, paths, accuracy by difficulty."""

from __future__ import annotations

import numpy as np
import torch
from vj_dynamic.bench.datasets import DatasetSplits
from vj_dynamic.skipnet import SkipResNet
from vj_dynamic.skipnet_policy import policy_report
from vj_dynamic.skipnet_training import evaluate

__all__ = ["describe_policy"]


def describe_policy(dense: SkipResNet, gated: SkipResNet, data: DatasetSplits) -> dict:
    """:func:`~vj_dynamic.skipnet_policy.policy_report` of ``gated`` on the test split.

    Returns
    -------
    dict
        The report's summary (percentiles, histogram, paths and their shares, gate
        rates) and, where the dataset grades its samples, ``by_difficulty``: per level,
        the dense and SkipNet accuracies, mean FLOPs and share of gated blocks run.
    """
    with torch.no_grad():
        report = policy_report(gated, data.x_test)
        dense_pred = evaluate(dense, data.x_test, data.y_test, execution="dense").predictions
    summary = report.to_dict(bins=12)
    labels = data.y_test.numpy()
    summary["accuracy"] = float((report.predictions == labels).mean())
    if data.difficulty_test is not None:
        rows = report.by_group(data.difficulty_test, labels)
        for row in rows:
            sel = data.difficulty_test == row["group"]
            row["accuracy_dense"] = float((dense_pred[sel] == labels[sel]).mean())
        summary["by_difficulty"] = rows
    summary["flops_quantiles"] = np.percentile(report.flops, [0, 10, 25, 50, 75, 90, 100]).tolist()
    return summary
