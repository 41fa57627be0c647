"""Haar feature pool and batch evaluation: OpenCV's pool and values, bit for bit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from reference import (
    naive_feature_values,
    naive_generate_features,
    naive_norm_factor,
    naive_rect_sum,
)

from vj import feature_eval
from vj.feature_eval import integral_stack, norm_factors_from_integrals, window_norm_factors
from vj.features import FEATURE_KINDS, FEATURE_MODES, HaarFeatureSet, feature_kinds

MODES = ("BASIC", "CORE", "ALL")


def _as_arrays(naive: list[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    n = len(naive)
    rects = np.zeros((n, 3, 4), np.int32)
    weights = np.zeros((n, 3), np.float32)
    tilted = np.zeros(n, np.bool_)
    for i, (_, t, rs) in enumerate(naive):
        tilted[i] = t
        for k, (x, y, w, h, wt) in enumerate(rs):
            rects[i, k] = (x, y, w, h)
            weights[i, k] = wt
    return rects, weights, tilted, [name for name, _, _ in naive]


# ----------------------------------------------------------------- enumeration


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 4), (7, 9), (24, 24)])
def test_enumeration_is_opencvs_pool_in_opencvs_order(size, mode):
    fs = HaarFeatureSet.enumerate(*size, mode=mode)
    rects, weights, tilted, names = _as_arrays(naive_generate_features(*size, mode))
    assert fs.window == size
    np.testing.assert_array_equal(fs.rects, rects)
    np.testing.assert_array_equal(fs.weights, weights)
    np.testing.assert_array_equal(fs.tilted, tilted)
    assert [FEATURE_KINDS[k] for k in feature_kinds(*size, mode)] == names


def test_counts_at_24x24():
    # BASIC is the pool of the Viola-Jones paper (scikit-image's five types).
    assert [len(HaarFeatureSet.enumerate(24, 24, m)) for m in MODES] == [162336, 210400, 261600]
    kinds = np.bincount(feature_kinds(24, 24, "ALL"), minlength=len(FEATURE_KINDS))
    expected = {"haar_x2": 43200, "haar_y2": 43200, "haar_x3": 27600, "haar_y3": 27600,
                "haar_x4": 19800, "haar_y4": 19800, "haar_x2_y2": 20736, "haar_point": 8464,
                "tilted_haar_x2": 12650, "tilted_haar_y2": 12650, "tilted_haar_x3": 7700,
                "tilted_haar_y3": 7700, "tilted_haar_x4": 5250, "tilted_haar_y4": 5250}
    assert dict(zip(FEATURE_KINDS, kinds.tolist(), strict=True)) == expected


def test_modes_are_nested_and_case_insensitive():
    basic = HaarFeatureSet.enumerate(8, 6, "basic")
    core = HaarFeatureSet.enumerate(8, 6, "Core")
    full = HaarFeatureSet.enumerate(8, 6, "ALL")
    assert len(basic) < len(core) < len(full)
    assert not basic.has_tilted and not core.has_tilted and full.has_tilted
    assert basic == full.subset(np.isin(feature_kinds(8, 6, "ALL"), [0, 1, 2, 3, 6]))
    assert FEATURE_MODES == MODES


def test_every_rectangle_lies_whole_inside_the_window():
    # Summing a window of ones counts the pixels a rectangle covers inside it;
    # a rectangle that stuck out would count fewer than its full area.
    fs = HaarFeatureSet.enumerate(9, 7, "ALL")
    ones = np.ones((7, 9), np.uint8)
    for i in range(len(fs)):
        for (x, y, w, h), wt in zip(fs.rects[i], fs.weights[i], strict=True):
            if wt:
                area = 2 * w * h if fs.tilted[i] else w * h
                assert naive_rect_sum(ones, x, y, w, h, fs.tilted[i]) == area


def test_flat_window_gives_zero_for_every_feature():
    # The weights balance the areas: every template is zero-mean.
    fs = HaarFeatureSet.enumerate(10, 10, "ALL")
    v = fs.evaluate(np.full((1, 10, 10), 77, np.uint8), normalize=False)
    assert not v.any()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((24, 24, "EXTENDED"), r"unknown feature mode 'EXTENDED'.*'BASIC', 'CORE', 'ALL'"),
        ((24, 24, 2), "unknown feature mode 2"),
        ((0, 24), "width must be a positive integer"),
        ((24, 2.5), "height must be a positive integer"),
    ],
)
def test_enumerate_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        HaarFeatureSet.enumerate(*args)


def test_class_rejects_a_tilted_rectangle_outside_the_window():
    fs = HaarFeatureSet.enumerate(6, 6, "ALL")
    i = int(np.nonzero(fs.tilted)[0][0])
    rects = fs.rects[i : i + 1].copy()
    rects[0, :, 0] -= rects[0, 0, 0]  # top corner on the left edge: the body sticks out
    with pytest.raises(ValueError, match="outside the 6x6 window"):
        HaarFeatureSet(fs.window, rects, fs.weights[i : i + 1], fs.tilted[i : i + 1])


# ------------------------------------------------------------------ evaluation


@st.composite
def _windows_and_features(draw):
    w = draw(st.integers(3, 8))
    h = draw(st.integers(3, 8))
    n = draw(st.integers(1, 4))
    patches = draw(arrays(np.uint8, (n, h, w)))
    fs = HaarFeatureSet.enumerate(w, h, "ALL")
    index = draw(st.lists(st.integers(0, len(fs) - 1), min_size=1, max_size=25))
    return fs, patches, np.asarray(index)


@settings(max_examples=60, deadline=None)
@given(_windows_and_features(), st.booleans())
def test_kernel_matches_reference(case, normalize):
    fs, patches, index = case
    expected = naive_feature_values(fs, patches, normalize=normalize, feature_index=index)
    got = fs.evaluate(patches, normalize=normalize, feature_index=index)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    got_t = fs.evaluate(patches, normalize=normalize, feature_index=index,
                        layout="features_major")
    np.testing.assert_array_equal(got_t, expected.T)
    assert got_t.flags.c_contiguous


def test_tiling_is_invisible():
    # One call over more windows and features than a tile equals small calls
    # that each fit in one tile (those are checked against the reference above).
    rng = np.random.default_rng(3)
    fs = HaarFeatureSet.enumerate(6, 5, "ALL")
    n = feature_eval._SAMPLE_TILE + 37
    patches = rng.integers(0, 256, (n, 5, 6), dtype=np.uint8)
    index = rng.integers(0, len(fs), feature_eval._MAX_FEATURE_TILE + 300)
    whole = fs.evaluate(patches, feature_index=index)
    np.testing.assert_array_equal(
        fs.evaluate(patches, feature_index=index, layout="features_major"), whole.T
    )
    pieces = np.block([
        [fs.evaluate(patches[r:r + 100], feature_index=index[c:c + 1000])
         for c in range(0, len(index), 1000)]
        for r in range(0, n, 100)
    ])
    np.testing.assert_array_equal(whole, pieces)


def test_integrals_once_then_feature_chunks():
    rng = np.random.default_rng(4)
    fs = HaarFeatureSet.enumerate(12, 10, "ALL")
    patches = rng.integers(0, 256, (20, 10, 12), dtype=np.uint8)
    full = fs.evaluate(patches, layout="features_major")
    sums, sqsums, tilted = integral_stack(patches, tilted=True)
    factors, _ = norm_factors_from_integrals(sums, sqsums)
    out = np.empty((1000, 20), np.float32)
    for start in range(0, len(fs), 1000):
        index = np.arange(start, min(start + 1000, len(fs)))
        res = fs.evaluate_integrals(sums, tilted, factors, feature_index=index,
                                    out=out[: len(index)], layout="features_major")
        assert np.shares_memory(res, out)
        np.testing.assert_array_equal(res, full[index])
    mask = fs.tilted.copy()
    np.testing.assert_array_equal(
        fs.evaluate_integrals(sums, tilted, factors, feature_index=mask), full[mask].T
    )
    upright = np.nonzero(~fs.tilted)[0]
    np.testing.assert_array_equal(
        fs.evaluate_integrals(sums, None, factors, feature_index=upright), full[upright].T
    )


def test_empty_inputs():
    fs = HaarFeatureSet.enumerate(5, 5)
    assert fs.evaluate(np.zeros((0, 5, 5), np.uint8)).shape == (0, len(fs))
    none = np.zeros(0, np.int64)
    assert fs.evaluate(np.zeros((2, 5, 5), np.uint8), feature_index=none).shape == (2, 0)
    assert fs.evaluate(np.zeros((2, 5, 5), np.uint8), feature_index=none,
                       layout="features_major").shape == (0, 2)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3).flatmap(
    lambda n: st.tuples(st.integers(3, 9), st.integers(3, 9)).flatmap(
        lambda hw: arrays(np.uint8, (n, *hw)))))
def test_integral_stack_matches_opencv(patches):
    sums, sqsums, tilted = integral_stack(patches, tilted=True)
    for i, p in enumerate(patches):
        s, sq, t = cv2.integral3(p, sdepth=cv2.CV_32S, sqdepth=cv2.CV_64F)
        np.testing.assert_array_equal(sums[i], s)
        np.testing.assert_array_equal(tilted[i], t)
        np.testing.assert_array_equal(sqsums[i], sq.astype(np.int64).astype(np.int32))


def test_squared_sums_wrap_like_opencv_int32_tables():
    patch = np.full((1, 300, 300), 255, np.uint8)  # squared sum 5.85e9 > 2**32
    _, sqsums, _ = integral_stack(patch)
    true_sum = 255 * 255 * 300 * 300
    assert int(sqsums[0, -1, -1]) == (true_sum + 2**31) % 2**32 - 2**31 != true_sum
    # OpenCV reads the wrapped squared sum as unsigned; so must the factor.
    patch[0, ::2, ::3] = 0
    factors, valid = window_norm_factors(patch)
    assert (factors[0], bool(valid[0])) == naive_norm_factor(patch[0])


@settings(max_examples=60, deadline=None)
@given(st.tuples(st.integers(3, 12), st.integers(3, 12)).flatmap(
    lambda hw: st.one_of(
        arrays(np.uint8, (3, *hw)),
        # low contrast windows straddle OpenCV's "too flat" cut (area * factor < 0.1)
        arrays(np.uint8, (3, *hw), elements=st.integers(100, 103)),
    )))
def test_norm_factors_match_reference(patches):
    factors, valid = window_norm_factors(patches)
    for i, p in enumerate(patches):
        f, ok = naive_norm_factor(p)
        assert factors[i] == f and factors[i].dtype == np.float32
        assert bool(valid[i]) == ok


def test_norm_factor_edge_cases():
    flat = np.full((1, 24, 24), 9, np.uint8)
    f, ok = window_norm_factors(flat)
    assert f[0] == 1.0 and not ok[0]
    noisy = np.random.default_rng(0).integers(0, 256, (1, 24, 24), dtype=np.uint8)
    f, ok = window_norm_factors(noisy)
    assert ok[0] and 0 < f[0] < 1


# ------------------------------------------------------- scikit-image agreement


def test_basic_pool_agrees_with_scikit_image():
    """BASIC features are scikit-image's five types under OpenCV's weighting.

    scikit-image sums its odd-numbered rectangles minus its even-numbered ones.
    OpenCV weights the whole template by -1 and the inner part by +2 or +3, so:
    two-rectangle types (right/bottom minus left/top) agree exactly; type-4 is
    negated (OpenCV counts the main diagonal positive); and the three-rectangle
    types exceed scikit-image's ``middle - outer`` by the middle sum,
    ``2 * middle - outer``.
    """
    from skimage.feature import haar_like_feature, haar_like_feature_coord
    from skimage.transform import integral_image, integrate

    size = 12
    types = ["type-2-x", "type-2-y", "type-3-x", "type-3-y", "type-4"]
    ours_kind = {"type-2-x": "haar_x2", "type-2-y": "haar_y2", "type-3-x": "haar_x3",
                 "type-3-y": "haar_y3", "type-4": "haar_x2_y2"}
    fs = HaarFeatureSet.enumerate(size, size, "BASIC")
    kinds = feature_kinds(size, size, "BASIC")
    # A BASIC feature is fixed by its template, its top-left corner and its cell.
    key_to_ours = {
        (FEATURE_KINDS[k], r[0][0], r[0][1], r[1][2], r[1][3]): i
        for i, (k, r) in enumerate(zip(kinds, fs.rects.tolist(), strict=True))
    }
    coords, sk_types = haar_like_feature_coord(size, size, types)
    match = np.empty(len(coords), np.int64)
    for j, (c, t) in enumerate(zip(coords, sk_types, strict=True)):
        (r0, c0), (r1, c1) = c[0]
        match[j] = key_to_ours[(ours_kind[t], c0, r0, c1 - c0 + 1, r1 - r0 + 1)]
    assert len(coords) == len(fs) and len(np.unique(match)) == len(fs)

    rng = np.random.default_rng(5)
    patches = rng.integers(0, 256, (3, size, size), dtype=np.uint8)
    ours = fs.evaluate(patches, normalize=False)
    sign = np.where(sk_types == "type-4", -1, 1)
    three = np.isin(sk_types, ["type-3-x", "type-3-y"])
    mid = [c[1] for c in coords[three]]
    for p, v in zip(patches, ours, strict=True):
        ii = integral_image(p)
        sk = haar_like_feature(ii, 0, 0, size, size, feature_type=types).astype(np.int64)
        expected = sign * sk
        expected[three] += integrate(ii, [m[0] for m in mid], [m[1] for m in mid]).astype(
            np.int64
        )
        np.testing.assert_array_equal(v[match], expected)
        for t in types:  # the per-type multisets, for the record
            sel = sk_types == t
            np.testing.assert_array_equal(np.sort(v[match[sel]]), np.sort(expected[sel]))


# ------------------------------------------------------------ OpenCV detector


def _one_stump_cascade(fs: HaarFeatureSet, i: int, threshold: np.float32) -> str:
    """A one-stage, one-stump cascade that accepts a window iff feature ``i`` >= threshold."""
    w, h = fs.window
    rects = "".join(
        f"<_>{x} {y} {rw} {rh} {float(wt)!r}</_>"
        for (x, y, rw, rh), wt in zip(fs.rects[i].tolist(), fs.weights[i], strict=True)
        if wt != 0
    )
    return f"""<?xml version="1.0"?>
<opencv_storage><cascade>
<stageType>BOOST</stageType><featureType>HAAR</featureType>
<height>{h}</height><width>{w}</width>
<stageParams><maxWeakCount>1</maxWeakCount></stageParams>
<featureParams><maxCatCount>0</maxCatCount></featureParams>
<stageNum>1</stageNum>
<stages><_><maxWeakCount>1</maxWeakCount><stageThreshold>0.</stageThreshold>
<weakClassifiers><_><internalNodes>0 -1 0 {float(threshold)!r}</internalNodes>
<leafValues>-1. 1.</leafValues></_></weakClassifiers></_></stages>
<features><_><rects>{rects}</rects><tilted>{int(fs.tilted[i])}</tilted></_></features>
</cascade></opencv_storage>
"""


def _opencv_accepts(tmp_path, fs, i, threshold, image) -> bool:
    path = tmp_path / "stump.xml"
    path.write_text(_one_stump_cascade(fs, i, threshold))
    clf = cv2.CascadeClassifier(str(path))
    assert not clf.empty()
    found = clf.detectMultiScale(image, scaleFactor=1.1, minNeighbors=0,
                                 minSize=fs.window, maxSize=fs.window)
    return len(found) == 1


def test_values_equal_opencv_detector(tmp_path):
    """OpenCV accepts at threshold v and rejects at the next float up: its value is v."""
    fs = HaarFeatureSet.enumerate(24, 24, "ALL")
    kinds = feature_kinds(24, 24, "ALL")
    rng = np.random.default_rng(6)
    index = np.array([rng.choice(np.nonzero(kinds == k)[0]) for k in range(len(FEATURE_KINDS))])
    images = rng.integers(0, 256, (2, 24, 24), dtype=np.uint8)
    values = fs.evaluate(images, feature_index=index)
    assert window_norm_factors(images)[1].all()
    for img, row in zip(images, values, strict=True):
        for i, v in zip(index, row, strict=True):
            assert _opencv_accepts(tmp_path, fs, i, v, img)
            assert not _opencv_accepts(tmp_path, fs, i, np.nextafter(v, np.float32(np.inf)), img)


def test_valid_flag_equals_opencv_window_rejection(tmp_path):
    fs = HaarFeatureSet.enumerate(24, 24)
    rng = np.random.default_rng(7)
    images = np.stack([
        np.full((24, 24), 50, np.uint8),  # nf = 0
        rng.integers(120, 122, (24, 24), dtype=np.uint8),  # too flat: area * factor >= 0.1
        rng.integers(100, 140, (24, 24), dtype=np.uint8),  # textured enough
    ])
    _, valid = window_norm_factors(images)
    accepts = [_opencv_accepts(tmp_path, fs, 0, np.float32(-1e30), img) for img in images]
    assert valid.tolist() == accepts == [False, False, True]


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("patches", "kwargs", "match"),
    [
        (np.zeros((2, 8, 8), np.float32), {}, "patches must be uint8"),
        (np.zeros((8, 8), np.uint8), {}, r"patches must have shape \(N, 8, 8\)"),
        (np.zeros((2, 8, 9), np.uint8), {}, r"for the 8x8 window, got \(2, 8, 9\)"),
        ([[[0]]], {}, "patches must be a numpy array"),
        (np.zeros((2, 8, 8), np.uint8), {"feature_index": np.array([0, 10**6])},
         r"feature_index values must lie in \[0, "),
        (np.zeros((2, 8, 8), np.uint8), {"feature_index": np.array([0.5])},
         "feature_index must be a 1-D integer or boolean array"),
        (np.zeros((2, 8, 8), np.uint8), {"feature_index": np.array([True, False])},
         r"a boolean feature_index must have shape \("),
        (np.zeros((2, 8, 8), np.uint8), {"layout": "column"}, "unknown layout 'column'"),
        (np.zeros((2, 8, 8), np.uint8), {"out": np.zeros((3, 3), np.float32)},
         "out must have shape"),
        (np.zeros((2, 8, 8), np.uint8), {"out": np.zeros((2, 2), np.float64)},
         "out must be a float32 ndarray"),
    ],
)
def test_evaluate_errors(patches, kwargs, match):
    fs = HaarFeatureSet.enumerate(8, 8, "ALL")
    with pytest.raises(ValueError, match=match):
        fs.evaluate(patches, **kwargs)


def test_evaluate_rejects_non_contiguous_out():
    fs = HaarFeatureSet.enumerate(4, 4)
    out = np.zeros((len(fs), 2), np.float32).T
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        fs.evaluate(np.zeros((2, 4, 4), np.uint8), out=out)


def test_evaluate_integrals_errors():
    fs = HaarFeatureSet.enumerate(6, 6, "ALL")
    sums, sqsums, tilted = integral_stack(np.zeros((2, 6, 6), np.uint8), tilted=True)
    with pytest.raises(ValueError, match="tilted tables are required"):
        fs.evaluate_integrals(sums)
    with pytest.raises(ValueError, match="sums must be int32"):
        fs.evaluate_integrals(sums.astype(np.int64), tilted)
    with pytest.raises(ValueError, match=r"sums must have shape \(N, 7, 7\) for the 6x6"):
        fs.evaluate_integrals(sums[:, :6], tilted)
    with pytest.raises(ValueError, match=r"tilted must have shape \(2, 7, 7\)"):
        fs.evaluate_integrals(sums, tilted[:1])
    with pytest.raises(ValueError, match="factors must be a float32 ndarray"):
        fs.evaluate_integrals(sums, tilted, np.ones(2))
    with pytest.raises(ValueError, match=r"factors must have shape \(2,\)"):
        fs.evaluate_integrals(sums, tilted, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="sqsums must have shape"):
        norm_factors_from_integrals(sums, sqsums[:1])


def test_norm_factor_errors():
    with pytest.raises(ValueError, match="at least 3x3"):
        window_norm_factors(np.zeros((1, 2, 5), np.uint8))
    with pytest.raises(ValueError, match="patches must be uint8"):
        window_norm_factors(np.zeros((1, 5, 5), np.int16))
    with pytest.raises(ValueError, match=r"use patches\[None\]"):
        window_norm_factors(np.zeros((5, 5), np.uint8))
