"""The paper's scan (``scan="features"``): scaled features, checked against plain Python."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from reference import naive_integrals, naive_stages_passed

import vj
from vj.pyramid import opencv_scales
from vj.scan_features import FEATURE_STEP, scaled_features

ALT2 = vj.load_cascade("opencv:alt2").truncated(2)      # depth-2 trees
DEFAULT = vj.load_cascade("opencv:default").truncated(3)  # stumps


def _scaled_rects(cascade, fi: int, s: float) -> list[tuple[int, int, int, int, float]]:
    """OpenCV 1.x: round the scaled rectangles, then balance rectangle 0 by area."""
    f = cascade.features
    rects = []
    for k in range(3):
        w = float(f.weights[fi, k])
        if w == 0:
            continue
        x, y, rw, rh = (int(np.rint(float(v) * s)) for v in f.rects[fi, k])
        rects.append((x, y, rw, rh, w))
    if rects[0][2] * rects[0][3] > 0:
        rest = sum(w * rw * rh for (_, _, rw, rh, w) in rects[1:])
        x, y, rw, rh, _ = rects[0]
        rects[0] = (x, y, rw, rh, float(np.float32(-rest / (rw * rh))))
    return rects


def _naive_feature_candidates(cascade, img, scale_factor, min_step=1):
    """The scaled-feature scan in plain Python on one integral image."""
    h, w = img.shape
    ww, wh = cascade.window
    s_tab, sq_tab, t_tab = naive_integrals(img)

    def rsum(t, x, y, rw, rh):
        return int(t[y, x] - t[y, x + rw] - t[y + rh, x] + t[y + rh, x + rw])

    out = []
    for sc in opencv_scales((w, h), cascade.window, scale_factor):
        s = float(sc)
        feats = {fi: _scaled_rects(cascade, fi, s) for fi in set(cascade.node_feature.tolist())}
        bw, bh = int(np.rint(ww * s)), int(np.rint(wh * s))
        r = int(np.rint(s))
        nw, nh = int(np.rint((ww - 2) * s)), int(np.rint((wh - 2) * s))
        ext_x = max([bw, r + nw] + [x + rw for fr in feats.values() for (x, _, rw, _, _) in fr])
        ext_y = max([bh, r + nh] + [y + rh for fr in feats.values() for (_, y, _, rh, _) in fr])
        step = max(1, int(round(max(FEATURE_STEP, min_step) * s)))
        area = float(nw * nh)
        for y in range(0, h - ext_y + 1, step):
            x = 0
            while x <= w - ext_x:
                vs = rsum(s_tab, x + r, y + r, nw, nh)
                vsq = rsum(sq_tab, x + r, y + r, nw, nh) & 0xFFFFFFFF
                nf = area * vsq - float(vs) * vs
                fac = np.float32(1.0 / np.sqrt(nf)) if nf > 0 else np.float32(1.0)
                res = -1
                if nf > 0 and area * float(fac) < 0.1:
                    res = _stages_passed(cascade, feats, s_tab, x, y, fac, rsum)
                if res == cascade.n_stages:
                    out.append((x, y, bw, bh))
                if res == 0:
                    x += step
                x += step
    return out


def _stages_passed(cascade, feats, s_tab, x, y, fac, rsum) -> int:
    def value(fi):
        acc = np.float32(0)
        for rx, ry, rw, rh, wt in feats[fi]:
            acc = np.float32(acc + np.float32(np.float32(wt) * np.float32(
                np.int32(rsum(s_tab, x + rx, y + ry, rw, rh)))))
        return np.float32(acc * fac)

    return naive_stages_passed(cascade, value)


def _blobby(seed: int, shape=(44, 52)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (4, 5), dtype=np.uint8)
    img = cv2.resize(base, shape[::-1], interpolation=cv2.INTER_LINEAR)
    noise = rng.integers(-20, 21, shape)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("cascade", "min_step"), [(DEFAULT, 1), (ALT2, 1), (ALT2, 2)],
                         ids=["stumps", "trees", "trees-min-step-2"])
def test_kernel_matches_plain_scaled_feature_scan(cascade, min_step):
    det = vj.CascadeDetector(cascade, min_step=min_step)
    hits = 0
    for seed in range(6):
        img = _blobby(seed)
        ours = det.candidates(img, scale_factor=1.25, scan="features")
        want = _naive_feature_candidates(cascade, img, 1.25, min_step)
        assert sorted(map(tuple, ours.tolist())) == sorted(want), seed
        hits += len(want)
    assert hits > 0, "no window passed: the comparison would be vacuous"


def test_scaled_features_keep_a_flat_patch_at_zero():
    f = vj.load_cascade("opencv:default").features
    for s in (1.0, 1.1, 1.77, 3.3):
        sf = scaled_features(f, s)
        area = (sf.rects[..., 2] * sf.rects[..., 3]).astype(np.float64)
        flat = (sf.weights.astype(np.float64) * area).sum(axis=1)
        big = np.abs(sf.weights.astype(np.float64) * area).sum(axis=1)
        assert np.all(np.abs(flat) <= 1e-6 * big)
        # Rounding follows the scale: x, y, w, h all scaled and rounded.
        np.testing.assert_array_equal(
            sf.rects[f.weights != 0], np.rint(f.rects[f.weights != 0] * s).astype(np.int64))


def _iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _face_images(sample_images) -> list[np.ndarray]:
    from conftest import shared_data_dir

    images = [sample_images["astronaut"]]
    shared = shared_data_dir()
    if shared is not None:
        for p in sorted((shared / "orl").glob("s*/*.pgm"))[::20]:
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            if img is not None:
                images.append(img)
    return images


@pytest.mark.parametrize("name", ["default", "alt2"])
def test_finds_the_faces_the_exact_scan_finds(name, sample_images):
    det = vj.load(f"opencv:{name}")
    exact_total = found = 0
    for img in _face_images(sample_images):
        exact = det.detect(img).tolist()
        feats = det.detect(img, scan="features").tolist()
        exact_total += len(exact)
        found += sum(any(_iou(e, f) >= 0.5 for f in feats) for e in exact)
        # Whatever the features scan reports is a face the exact scan found.
        assert all(any(_iou(f, e) >= 0.5 for e in exact) for f in feats)
    assert exact_total > 0
    assert found / exact_total >= 0.75, f"{found}/{exact_total}"


def test_astronaut_face_in_both_scans(sample_images):
    det = vj.load("opencv:default")
    img = sample_images["astronaut"]
    (exact,) = det.detect(img).tolist()
    feats = det.detect(img, scan="features", return_scores=True)[0].tolist()
    assert any(_iou(exact, f) >= 0.7 for f in feats)


def test_bad_scan_value_lists_the_choices():
    det = vj.load("opencv:alt2")
    img = np.zeros((40, 40), np.uint8)
    with pytest.raises(ValueError, match="'image', 'features'") as err:
        det.detect(img, scan="pyramid")
    assert "pyramid" in str(err.value)
    with pytest.raises(ValueError, match="scan must be one of"):
        det.candidates(img, scan=None)
