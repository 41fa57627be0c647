"""AdaBoost over small trees: Discrete (Viola-Jones) and Gentle (OpenCV's default).

One boosting round fits a tree (:mod:`vj.weak_learners`) to the weighted samples
left after *weight trimming*, adds its leaf values to every sample's score and
reweights the training samples by ``exp(-y * h(x))``:

``"gentle"``
    a least-squares regression tree on ``y``; leaves are weighted means of ``y``
    in ``[-1, 1]`` (Friedman, Hastie and Tibshirani, 2000).
``"discrete"``
    a classification tree with leaves ``+-alpha``, ``alpha = 1/2 ln((1 - e) / e)``
    for its weighted error ``e`` (Freund and Schapire; Viola and Jones, 2001).

Leaf values are float32 and scores sum them in float64, in tree order, exactly
as OpenCV's detector sums a stage, so thresholds chosen on these scores hold
for the detector.

:class:`StageBooster` is the round-by-round engine the cascade trainer drives
(and checkpoints); :class:`BoostedStage` wraps it as a scikit-learn estimator.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from .feature_bins import MAX_BINS, FeatureBins
from .weak_learners import Tree, fit_tree, leaf_index

__all__ = ["BOOSTING_TYPES", "BoostedStage", "StageBooster", "tree_values", "trees_from_arrays",
           "trees_to_arrays", "trim_rows"]

BOOSTING_TYPES = ("gentle", "discrete")
_LOSS = {"gentle": "squared", "discrete": "misclass"}
_MIN_ERROR = 1e-10  # keeps alpha finite for a weak learner that makes no error


def trim_rows(weights: np.ndarray, rows: np.ndarray, trim_rate: float) -> np.ndarray:
    """The heaviest samples holding ``trim_rate`` of the total weight (OpenCV's trimming).

    Samples AdaBoost has already learned carry tiny weights; skipping them when
    fitting the next weak learner changes it little and saves most of the work.

    Parameters
    ----------
    weights : (N,) float ndarray
    rows : (M,) int ndarray
        Candidate samples.
    trim_rate : float
        In (0, 1]; 1 keeps every sample.

    Returns
    -------
    (K,) int64 ndarray
        Kept rows, in increasing order.
    """
    if not 0.0 < trim_rate <= 1.0:
        raise ValueError(f"trim_rate must be in (0, 1], got {trim_rate}")
    rows = np.asarray(rows, dtype=np.int64)
    if trim_rate >= 1.0 or rows.size == 0:
        return rows
    w = np.asarray(weights, dtype=np.float64)[rows]
    order = np.argsort(-w, kind="stable")
    cum = np.cumsum(w[order])
    keep = int(np.searchsorted(cum, trim_rate * cum[-1], side="left")) + 1
    return np.sort(rows[order[: min(keep, rows.size)]])


def _check_boosting(boosting: str) -> str:
    if boosting not in BOOSTING_TYPES:
        raise ValueError(f"unknown boosting type {boosting!r}; expected one of {BOOSTING_TYPES}")
    return boosting


class StageBooster:
    """Round-by-round AdaBoost on quantised features, tracking every sample's score.

    Parameters
    ----------
    fb : FeatureBins
        Features of all samples the stage sees (training and held-out).
    y : (N,) ndarray
        Labels -1 / +1.
    train_rows : (M,) int ndarray
        Samples boosting fits to; the others are only scored (e.g. the held-out
        positives a cascade stage sets its threshold on).
    boosting : {"gentle", "discrete"}
    max_depth : int
        1 for stumps.
    trim_rate : float
        Weight trimming rate (1 disables it).

    Attributes
    ----------
    weights : (N,) float64 ndarray
        Sample weights, zero outside ``train_rows``; each class starts with half.
    scores : (N,) float64 ndarray
        Sum of the trees' leaf values on every sample.
    trees : list of Tree
    """

    def __init__(
        self,
        fb: FeatureBins,
        y: np.ndarray,
        train_rows: np.ndarray,
        *,
        boosting: str = "gentle",
        max_depth: int = 1,
        trim_rate: float = 0.95,
    ) -> None:
        self.fb = fb
        self.y = np.where(np.asarray(y) > 0, 1.0, -1.0)
        if self.y.shape != (fb.n_samples,):
            raise ValueError(f"y must have shape ({fb.n_samples},), got {np.shape(y)}")
        self.train_rows = np.ascontiguousarray(train_rows, dtype=np.int64)
        yt = self.y[self.train_rows]
        n_pos, n_neg = int((yt > 0).sum()), int((yt < 0).sum())
        if n_pos == 0 or n_neg == 0:
            raise ValueError(f"boosting needs both classes, got {n_pos} positives, "
                             f"{n_neg} negatives")
        self.boosting = _check_boosting(boosting)
        self.max_depth = int(max_depth)
        self.trim_rate = float(trim_rate)
        self.weights = np.zeros(fb.n_samples)
        self.weights[self.train_rows] = np.where(yt > 0, 0.5 / n_pos, 0.5 / n_neg)
        self.scores = np.zeros(fb.n_samples)
        self.trees: list[Tree] = []

    def step(self) -> Tree:
        """Fit one more tree, add it to every score and reweight the training samples."""
        rows = trim_rows(self.weights, self.train_rows, self.trim_rate)
        tree = fit_tree(self.fb, self.weights, self.y, rows,
                        loss=_LOSS[self.boosting], max_depth=self.max_depth)
        leaf = leaf_index(self.fb, tree)
        if self.boosting == "discrete":
            tr = self.train_rows
            wrong = np.sign(tree.leaves[leaf[tr]]) != self.y[tr]
            err = float(self.weights[tr][wrong].sum() / self.weights[tr].sum())
            err = min(max(err, _MIN_ERROR), 1.0 - _MIN_ERROR)
            tree = tree.with_leaves(tree.leaves * np.float32(0.5 * np.log((1.0 - err) / err)))
        self._add(tree, leaf)
        return tree

    def _add(self, tree: Tree, leaf: np.ndarray) -> None:
        h = tree.leaves[leaf].astype(np.float64)
        self.scores += h
        tr = self.train_rows
        w = self.weights[tr] * np.exp(-self.y[tr] * h[tr])
        self.weights[tr] = w / w.sum()
        self.trees.append(tree)

    # ------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, np.ndarray]:
        """Arrays that restore this booster with :meth:`restore` (for checkpoints)."""
        return {"weights": self.weights.copy(), "scores": self.scores.copy(),
                **trees_to_arrays(self.trees)}

    def restore(self, state: dict[str, np.ndarray]) -> StageBooster:
        """Continue from :meth:`state` of a booster built on the same data."""
        weights = np.asarray(state["weights"], np.float64)
        if weights.shape != self.weights.shape:
            raise ValueError(f"checkpoint has {weights.size} samples, this booster "
                             f"{self.weights.size}")
        self.weights = weights.copy()
        self.scores = np.asarray(state["scores"], np.float64).copy()
        self.trees = trees_from_arrays(state, self.fb)
        return self


def trees_to_arrays(trees: list[Tree]) -> dict[str, np.ndarray]:
    """Flat arrays of a list of trees (``tree_nodes`` says how many nodes each has)."""
    cat = lambda name, dt: (np.concatenate([getattr(t, name) for t in trees]).astype(dt)  # noqa: E731
                            if trees else np.zeros(0, dt))
    return {
        "tree_nodes": np.array([t.n_nodes for t in trees], np.int32),
        "feature_row": cat("feature_row", np.int64),
        "split_bin": cat("split_bin", np.int32),
        "threshold": cat("threshold", np.float32),
        "left": cat("left", np.int32),
        "right": cat("right", np.int32),
        "leaves": cat("leaves", np.float32),
    }


def trees_from_arrays(arrays: dict[str, np.ndarray], fb: FeatureBins | None = None) -> list[Tree]:
    """Inverse of :func:`trees_to_arrays`."""
    trees = []
    k = 0
    for n in np.asarray(arrays["tree_nodes"]).tolist():
        s = slice(k, k + n)
        trees.append(Tree(
            np.asarray(arrays["feature_row"][s], np.int64),
            np.asarray(arrays["split_bin"][s], np.int32),
            np.asarray(arrays["threshold"][s], np.float32),
            np.asarray(arrays["left"][s], np.int32),
            np.asarray(arrays["right"][s], np.int32),
            np.asarray(arrays["leaves"][k + len(trees): k + len(trees) + n + 1], np.float32),
        ))
        k += n
    return trees


def tree_values(trees: list[Tree], feature_ids: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Sum of the trees' leaf values on raw feature values ``x`` (N, n_features).

    ``feature_ids[row]`` is the column of ``x`` a tree's feature row refers to.
    """
    x = np.asarray(x, dtype=np.float32)
    out = np.zeros(x.shape[0])
    for t in trees:
        cols = feature_ids[t.feature_row]
        node = np.zeros(x.shape[0], np.int64)
        leaf = np.full(x.shape[0], -1, np.int64)
        active = np.ones(x.shape[0], bool)
        while active.any():
            idx = np.nonzero(active)[0]
            j = node[idx]
            go_left = x[idx, cols[j]] < t.threshold[j]
            child = np.where(go_left, t.left[j], t.right[j])
            done = child <= 0
            leaf[idx[done]] = -child[done]
            active[idx[done]] = False
            node[idx[~done]] = child[~done]
        out += t.leaves[leaf].astype(np.float64)
    return out


class BoostedStage(ClassifierMixin, BaseEstimator):
    """A boosted classifier of decision stumps or small trees, scikit-learn style.

    One cascade stage without the cascade: useful to cross-validate boosting
    settings on a fixed feature matrix (e.g. Haar feature values from
    :meth:`vj.features.HaarFeatureSet.evaluate`).

    Parameters
    ----------
    n_estimators : int
        Boosting rounds.
    boosting : {"gentle", "discrete"}
    max_depth : int
        Depth of each tree (1: stumps).
    weight_trim_rate : float
        Fraction of the total weight the weak-learner search keeps (1: all).
    n_bins : int
        Quantisation bins per feature (power of two up to 256).

    Attributes
    ----------
    classes_ : (2,) ndarray
    trees_ : list of Tree
        ``tree.feature_row`` are column indices of ``X``.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 5)); y = (X[:, 2] > 0.3).astype(int)
    >>> clf = BoostedStage(n_estimators=5).fit(X, y)
    >>> float((clf.predict(X) == y).mean()) > 0.95
    True
    """

    def __init__(
        self,
        n_estimators: int = 50,
        boosting: str = "gentle",
        max_depth: int = 1,
        weight_trim_rate: float = 0.95,
        n_bins: int = MAX_BINS,
    ) -> None:
        self.n_estimators = n_estimators
        self.boosting = boosting
        self.max_depth = max_depth
        self.weight_trim_rate = weight_trim_rate
        self.n_bins = n_bins

    def fit(self, X: np.ndarray, y: np.ndarray) -> BoostedStage:
        """Boost ``n_estimators`` trees on features ``X`` (n_samples, n_features)."""
        X = self._check_X(X, fitted=False)
        y = np.asarray(y)
        if y.shape != (X.shape[0],):
            raise ValueError(f"y must have shape ({X.shape[0]},), got {y.shape}")
        classes = np.unique(y)
        if classes.size != 2:
            raise ValueError(f"BoostedStage needs exactly two classes, got {classes.tolist()}")
        if int(self.n_estimators) < 1:
            raise ValueError(f"n_estimators must be >= 1, got {self.n_estimators}")
        _check_boosting(self.boosting)
        fb = FeatureBins.from_values(X.T, self.n_bins)
        booster = StageBooster(fb, np.where(y == classes[1], 1, -1), np.arange(X.shape[0]),
                               boosting=self.boosting, max_depth=int(self.max_depth),
                               trim_rate=float(self.weight_trim_rate))
        for _ in range(int(self.n_estimators)):
            booster.step()
        self.classes_ = classes
        self.trees_ = booster.trees
        self.n_features_in_ = X.shape[1]
        return self

    def _check_X(self, X: np.ndarray, fitted: bool = True) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"X must be a non-empty 2-D (n_samples, n_features) array, "
                             f"got shape {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or infinite values")
        if fitted:
            if not hasattr(self, "trees_"):
                raise ValueError("this BoostedStage is not fitted yet; call fit first")
            if X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} features, the model was fitted on "
                                 f"{self.n_features_in_}")
        return X

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """(n_samples,) sum of leaf values; positive leans to ``classes_[1]``."""
        X = self._check_X(X)
        return tree_values(self.trees_, np.arange(X.shape[1]), X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class labels: ``classes_[1]`` where the decision function is >= 0."""
        positive = self.decision_function(X) >= 0
        return self.classes_[positive.astype(int)]
