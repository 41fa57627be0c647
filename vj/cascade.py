"""The cascade model: one in-memory form shared by detector, trainer and file formats.

A cascade is a list of *stages*; a stage is a list of boosted *trees* plus a
threshold; a tree is a list of internal *nodes* and ``nodes + 1`` *leaves*. A
stump is a tree with one node. Everything is stored flat, in OpenCV's
conventions, so the detection kernel reads the arrays directly:

* node ``k`` compares ``feature(node_feature[k]) < node_threshold[k]``; if true
  it goes to ``node_left[k]`` else ``node_right[k]``. A child ``c > 0`` is the
  index of the next node *within the same tree*; ``c <= 0`` is leaf ``-c``.
* a window passes stage ``s`` when the sum of its trees' leaf values is at least
  ``stage_threshold[s] - THRESHOLD_EPS`` (OpenCV subtracts the same epsilon when
  it loads a cascade, so thresholds are stored as written in files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .features import HaarFeatureSet

__all__ = ["Cascade", "THRESHOLD_EPS"]

THRESHOLD_EPS = np.float32(1e-5)


@dataclass(frozen=True, eq=False)
class Cascade:
    """A boosted cascade of Haar-feature trees.

    Parameters
    ----------
    features : HaarFeatureSet
        The features the nodes refer to; its window is the cascade's window.
    node_feature, node_left, node_right : (M,) int32 ndarray
    node_threshold : (M,) float32 ndarray
    tree_nodes : (T,) int32 ndarray
        Number of internal nodes of each tree (1 for a stump).
    leaf_values : (T + M,) float32 ndarray
        ``tree_nodes[t] + 1`` leaves per tree, trees in order.
    stage_trees : (S,) int32 ndarray
        Number of trees in each stage.
    stage_threshold : (S,) float32 ndarray
    metadata : dict
        Free-form JSON-serialisable information (name, training report, ...).
    """

    features: HaarFeatureSet
    node_feature: np.ndarray
    node_threshold: np.ndarray
    node_left: np.ndarray
    node_right: np.ndarray
    tree_nodes: np.ndarray
    leaf_values: np.ndarray
    stage_trees: np.ndarray
    stage_threshold: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        conv = {
            "node_feature": np.int32,
            "node_threshold": np.float32,
            "node_left": np.int32,
            "node_right": np.int32,
            "tree_nodes": np.int32,
            "leaf_values": np.float32,
            "stage_trees": np.int32,
            "stage_threshold": np.float32,
        }
        for name, dtype in conv.items():
            arr = np.ascontiguousarray(np.asarray(getattr(self, name)), dtype=dtype)
            if arr.ndim != 1:
                raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
            object.__setattr__(self, name, arr)
        self._validate()

    # ------------------------------------------------------------------ checks
    def _validate(self) -> None:
        m = self.node_feature.size
        for name in ("node_threshold", "node_left", "node_right"):
            if getattr(self, name).size != m:
                raise ValueError(f"{name} has {getattr(self, name).size} entries, expected {m}")
        if np.any(self.tree_nodes < 1):
            raise ValueError("every tree needs at least one node")
        if int(self.tree_nodes.sum()) != m:
            raise ValueError(f"tree_nodes sum to {int(self.tree_nodes.sum())}, expected {m} nodes")
        n_trees = self.tree_nodes.size
        if self.leaf_values.size != m + n_trees:
            raise ValueError(
                f"leaf_values has {self.leaf_values.size} entries, expected {m + n_trees}"
            )
        if self.stage_threshold.size != self.stage_trees.size:
            raise ValueError("stage_trees and stage_threshold differ in length")
        if self.stage_trees.size == 0:
            raise ValueError("a cascade needs at least one stage")
        if np.any(self.stage_trees < 1):
            raise ValueError("every stage needs at least one tree")
        if int(self.stage_trees.sum()) != n_trees:
            raise ValueError(
                f"stage_trees sum to {int(self.stage_trees.sum())}, expected {n_trees} trees"
            )
        nf = len(self.features)
        if m and (self.node_feature.min() < 0 or self.node_feature.max() >= nf):
            raise ValueError(f"node feature index out of range [0, {nf})")
        if not (np.all(np.isfinite(self.node_threshold)) and np.all(np.isfinite(self.leaf_values))
                and np.all(np.isfinite(self.stage_threshold))):
            raise ValueError("thresholds and leaf values must be finite")
        # Children must point inside their own tree; leaves inside the tree's leaves.
        starts = self.tree_node_start
        for t in range(n_trees):
            k0, k = int(starts[t]), int(self.tree_nodes[t])
            for child in (self.node_left[k0:k0 + k], self.node_right[k0:k0 + k]):
                if np.any(child >= k) or np.any(-child > k):
                    raise ValueError(f"tree {t} has a child index outside the tree")

    # ------------------------------------------------------------- derived
    @property
    def window(self) -> tuple[int, int]:
        """Detection window ``(width, height)``."""
        return self.features.window

    @property
    def n_stages(self) -> int:
        return int(self.stage_trees.size)

    @property
    def n_trees(self) -> int:
        return int(self.tree_nodes.size)

    @property
    def is_stump_based(self) -> bool:
        return bool(np.all(self.tree_nodes == 1))

    @property
    def tree_node_start(self) -> np.ndarray:
        """(T,) int32 index of each tree's first node."""
        return np.concatenate([[0], np.cumsum(self.tree_nodes)[:-1]]).astype(np.int32)

    @property
    def tree_leaf_start(self) -> np.ndarray:
        """(T,) int32 index of each tree's first leaf."""
        return np.concatenate([[0], np.cumsum(self.tree_nodes + 1)[:-1]]).astype(np.int32)

    @property
    def stage_tree_start(self) -> np.ndarray:
        """(S,) int32 index of each stage's first tree."""
        return np.concatenate([[0], np.cumsum(self.stage_trees)[:-1]]).astype(np.int32)

    @property
    def effective_stage_threshold(self) -> np.ndarray:
        """(S,) float32 thresholds as evaluated (file value minus OpenCV's epsilon)."""
        return (self.stage_threshold - THRESHOLD_EPS).astype(np.float32)

    # ------------------------------------------------------------ editing
    def truncated(self, n_stages: int) -> Cascade:
        """The cascade's first ``n_stages`` stages (a more lenient detector)."""
        if not 1 <= n_stages <= self.n_stages:
            raise ValueError(f"n_stages must be in [1, {self.n_stages}], got {n_stages}")
        n_trees = int(self.stage_trees[:n_stages].sum())
        n_nodes = int(self.tree_nodes[:n_trees].sum())
        return self._rebuild(n_stages, n_trees, n_nodes)

    def _rebuild(self, n_stages: int, n_trees: int, n_nodes: int) -> Cascade:
        used = np.unique(self.node_feature[:n_nodes])
        remap = np.full(len(self.features), -1, np.int32)
        remap[used] = np.arange(used.size, dtype=np.int32)
        return Cascade(
            features=self.features.subset(used),
            node_feature=remap[self.node_feature[:n_nodes]],
            node_threshold=self.node_threshold[:n_nodes],
            node_left=self.node_left[:n_nodes],
            node_right=self.node_right[:n_nodes],
            tree_nodes=self.tree_nodes[:n_trees],
            leaf_values=self.leaf_values[: n_nodes + n_trees],
            stage_trees=self.stage_trees[:n_stages],
            stage_threshold=self.stage_threshold[:n_stages],
            metadata=dict(self.metadata),
        )

    def with_stage_threshold(self, stage: int, threshold: float) -> Cascade:
        """A copy with one stage's threshold replaced."""
        thr = self.stage_threshold.copy()
        thr[stage] = threshold
        return Cascade(
            self.features, self.node_feature, self.node_threshold, self.node_left,
            self.node_right, self.tree_nodes, self.leaf_values, self.stage_trees, thr,
            dict(self.metadata),
        )

    @classmethod
    def concatenate(cls, stages: list[Cascade], metadata: dict | None = None) -> Cascade:
        """Chain cascades (e.g. stages trained one at a time) into one.

        All parts must share the same window; their feature sets are merged.
        """
        if not stages:
            raise ValueError("nothing to concatenate")
        window = stages[0].window
        rects, weights, tilted, nodes_f = [], [], [], []
        offset = 0
        for c in stages:
            if c.window != window:
                raise ValueError(f"window mismatch: {c.window} vs {window}")
            rects.append(c.features.rects)
            weights.append(c.features.weights)
            tilted.append(c.features.tilted)
            nodes_f.append(c.node_feature + offset)
            offset += len(c.features)
        feats = HaarFeatureSet(
            window, np.concatenate(rects), np.concatenate(weights), np.concatenate(tilted)
        )
        cat = lambda name: np.concatenate([getattr(c, name) for c in stages])  # noqa: E731
        return cls(
            features=feats,
            node_feature=np.concatenate(nodes_f),
            node_threshold=cat("node_threshold"),
            node_left=cat("node_left"),
            node_right=cat("node_right"),
            tree_nodes=cat("tree_nodes"),
            leaf_values=cat("leaf_values"),
            stage_trees=cat("stage_trees"),
            stage_threshold=cat("stage_threshold"),
            metadata=dict(metadata or stages[0].metadata),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cascade):
            return NotImplemented
        names = ("node_feature", "node_threshold", "node_left", "node_right", "tree_nodes",
                 "leaf_values", "stage_trees", "stage_threshold")
        return self.features == other.features and all(
            np.array_equal(getattr(self, n), getattr(other, n)) for n in names
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        kind = "stumps" if self.is_stump_based else "trees"
        w, h = self.window
        return (f"Cascade({w}x{h}, {self.n_stages} stages, {self.n_trees} {kind}, "
                f"{len(self.features)} features)")
