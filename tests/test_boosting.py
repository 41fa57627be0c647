"""Boosting: quantisation, split search against the plain reference, AdaBoost, estimator."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import (
    naive_best_stump,
    naive_digitize,
    naive_leaf_index,
    naive_quantile_edges,
    naive_split_scores,
    naive_trim_rows,
)

from vj.boosting import (
    BoostedStage,
    StageBooster,
    tree_values,
    trees_from_arrays,
    trees_to_arrays,
    trim_rows,
)
from vj.feature_bins import FeatureBins, bin_feature_values, digitize, quantile_edges
from vj.weak_learners import apply_tree_bins, best_splits, fit_tree, leaf_index

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def problems(draw):
    """Small random training sets: values (F, N), weights, labels with both classes, rows."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n_feat = draw(st.integers(1, 9))
    n = draw(st.integers(4, 60))
    n_bins = draw(st.sampled_from([2, 4, 16, 256]))
    # Few distinct values make ties and empty bins common.
    distinct = draw(st.sampled_from([3, 10, 1000]))
    values = (rng.integers(0, distinct, (n_feat, n)) / distinct - 0.5).astype(np.float32)
    y = np.where(rng.random(n) < 0.5, 1, -1)
    y[0], y[1] = 1, -1
    weights = rng.random(n) + 1e-3
    rows = np.sort(rng.choice(n, draw(st.integers(2, n)), replace=False))
    rows = np.union1d(rows, [0, 1])
    return values, weights, y, rows, n_bins


@SETTINGS
@given(problems())
def test_quantisation_matches_reference(p):
    values, _, _, _, n_bins = p
    edges = quantile_edges(values, n_bins)
    np.testing.assert_array_equal(edges, naive_quantile_edges(values, n_bins))
    np.testing.assert_array_equal(digitize(values, edges), naive_digitize(values, edges))


@SETTINGS
@given(problems(), st.sampled_from(["squared", "misclass"]))
def test_split_search_matches_reference(p, loss):
    values, weights, y, rows, n_bins = p
    fb = FeatureBins.from_values(values, n_bins)
    score, split = best_splits(fb, weights, y, rows, loss)
    ref_score, ref_split = naive_split_scores(fb.bins, n_bins, weights, y, rows, loss)
    np.testing.assert_array_equal(score, ref_score)
    np.testing.assert_array_equal(split, ref_split)


@SETTINGS
@given(problems(), st.sampled_from(["squared", "misclass"]))
def test_stump_matches_reference(p, loss):
    values, weights, y, rows, n_bins = p
    fb = FeatureBins.from_values(values, n_bins)
    if not np.isfinite(best_splits(fb, weights, y, rows, loss)[0]).any():
        with pytest.raises(ValueError, match="no feature separates"):
            fit_tree(fb, weights, y, rows, loss=loss)
        return
    tree = fit_tree(fb, weights, y, rows, loss=loss)
    f, thr, left, right = naive_best_stump(values, weights, y, rows, loss, n_bins)
    assert tree.n_nodes == 1
    assert int(tree.feature_row[0]) == f
    assert float(tree.threshold[0]) == thr
    np.testing.assert_allclose(tree.leaves, [left, right], rtol=1e-6, atol=1e-7)


def test_large_random_problem_matches_reference():
    """Many samples per bin: accumulation order matters; the scores still agree exactly."""
    rng = np.random.default_rng(7)
    values = rng.normal(size=(6, 3000)).astype(np.float32)
    y = np.where(values[2] + 0.5 * rng.normal(size=3000) > 0, 1, -1)
    weights = rng.random(3000)
    rows = np.sort(rng.choice(3000, 2500, replace=False))
    fb = FeatureBins.from_values(values, 256, edge_sample=np.arange(0, 3000, 3))
    for loss in ("squared", "misclass"):
        score, split = best_splits(fb, weights, y, rows, loss)
        ref = naive_split_scores(fb.bins, 256, weights, y, rows, loss)
        np.testing.assert_array_equal(score, ref[0])
        np.testing.assert_array_equal(split, ref[1])
        assert int(np.argmin(score)) == 2


@SETTINGS
@given(st.integers(0, 10_000), st.floats(0.05, 1.0))
def test_trim_rows_matches_reference(seed, rate):
    rng = np.random.default_rng(seed)
    w = rng.random(40) ** 4
    w[rng.random(40) < 0.2] = 0.5  # ties
    rows = np.sort(rng.choice(40, 30, replace=False))
    np.testing.assert_array_equal(trim_rows(w, rows, rate), naive_trim_rows(w, rows, rate))


def test_trim_rows_rejects_bad_rate():
    with pytest.raises(ValueError, match="trim_rate"):
        trim_rows(np.ones(3), np.arange(3), 0.0)


def test_trees_agree_on_bins_and_raw_values():
    """Thresholds are bin edges: the tree on raw float32 values gives the same leaves."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 12)).astype(np.float32)
    y = np.where((x[:, 1] > 0.2) & (x[:, 4] < 0.5), 1, -1)
    fb = FeatureBins.from_values(x.T, 64)
    tree = fit_tree(fb, np.full(400, 1 / 400), y, np.arange(400), max_depth=2)
    assert tree.n_nodes == 3 and tree.leaves.size == 4
    assert set(tree.feature_row.tolist()) == {1, 4}
    np.testing.assert_array_equal(
        apply_tree_bins(fb, tree).astype(np.float64), tree_values([tree], np.arange(12), x))
    # The tree learns the conjunction a stump cannot.
    assert np.mean(np.sign(apply_tree_bins(fb, tree)) == y) > 0.97


def test_bin_feature_values_streams_chunks():
    rng = np.random.default_rng(4)
    values = rng.normal(size=(37, 50)).astype(np.float32)
    sample = np.arange(0, 50, 2)

    def chunk(ids, out):
        out[:] = values[ids]
        return out

    fb = bin_feature_values(chunk, np.arange(37), 50, sample, n_bins=16, chunk=8)
    ref = FeatureBins.from_values(values, 16, edge_sample=sample)
    np.testing.assert_array_equal(fb.bins, ref.bins)
    np.testing.assert_array_equal(fb.edges, ref.edges)


@pytest.mark.parametrize("boosting", ["gentle", "discrete"])
def test_stage_booster_learns_and_restores(boosting):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 20)).astype(np.float32)
    y = np.where(x[:, 3] + x[:, 7] - x[:, 11] > 0, 1, -1)
    fb = FeatureBins.from_values(x.T, 256)
    train = np.arange(500)
    b = StageBooster(fb, y, train, boosting=boosting, trim_rate=0.9)
    for _ in range(4):
        b.step()
    state = b.state()
    b2 = StageBooster(fb, y, train, boosting=boosting, trim_rate=0.9).restore(state)
    for _ in range(8):
        b.step()
        b2.step()
    np.testing.assert_array_equal(b.scores, b2.scores)
    np.testing.assert_array_equal(b.weights, b2.weights)
    assert abs(b.weights.sum() - 1) < 1e-9 and np.all(b.weights[500:] == 0)
    # Scores are the trees' sums, on held-out samples too.
    np.testing.assert_array_equal(b.scores, tree_values(b.trees, np.arange(20), x))
    assert np.mean(np.sign(b.scores[500:]) == y[500:]) > 0.85
    again = trees_from_arrays(trees_to_arrays(b.trees))
    assert all(np.array_equal(s.leaves, t.leaves) and np.array_equal(s.threshold, t.threshold)
               for s, t in zip(again, b.trees, strict=True))


def test_stage_booster_needs_both_classes():
    fb = FeatureBins.from_values(np.arange(8, dtype=np.float32)[None], 4)
    with pytest.raises(ValueError, match="both classes"):
        StageBooster(fb, np.ones(8), np.arange(8))


def test_boosted_stage_on_lfw_faces():
    """Haar features of real faces vs non-faces; the estimator cross-validates with sklearn."""
    import skimage.data
    from sklearn.model_selection import cross_val_score

    from vj.features import HaarFeatureSet

    images = skimage.data.lfw_subset()  # 100 faces, then 100 non-faces
    labels = np.repeat([1, 0], 100)
    patches = (images[:, :24, :24] * 255).round().astype(np.uint8)
    feats = HaarFeatureSet.enumerate(24, 24)
    pick = np.random.default_rng(0).choice(len(feats), 3000, replace=False)
    x = feats.evaluate(patches, feature_index=pick)
    scores = cross_val_score(BoostedStage(n_estimators=15), x, labels, cv=4)
    assert scores.mean() > 0.85
    clf = BoostedStage(n_estimators=10, boosting="discrete", max_depth=2).fit(x, labels)
    assert clf.score(x, labels) > 0.95
    assert set(np.unique(clf.predict(x))) <= {0, 1}


def test_boosted_stage_rejects_bad_input():
    clf = BoostedStage()
    with pytest.raises(ValueError, match="not fitted"):
        clf.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="two classes"):
        clf.fit(np.zeros((4, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="boosting type"):
        BoostedStage(boosting="real").fit(np.eye(4), [0, 1, 0, 1])
    fitted = BoostedStage(n_estimators=2).fit(np.eye(4), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="features"):
        fitted.predict(np.zeros((2, 3)))


@SETTINGS
@given(problems(), st.integers(1, 3), st.sampled_from(["squared", "misclass"]))
def test_leaf_index_matches_reference(p, depth, loss):
    values, weights, y, rows, n_bins = p
    fb = FeatureBins.from_values(values, n_bins)
    if not np.isfinite(best_splits(fb, weights, y, rows, loss)[0]).any():
        return
    tree = fit_tree(fb, weights, y, rows, loss=loss, max_depth=depth)
    assert tree.leaves.size == tree.n_nodes + 1
    np.testing.assert_array_equal(
        leaf_index(fb, tree),
        naive_leaf_index(fb.bins, tree.feature_row, tree.split_bin, tree.left, tree.right))
