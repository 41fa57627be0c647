"""The verifier networks, their IDK cascade, saving and loading, and the shipped weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from vj_dynamic.face.crops import CROP_SIZE
from vj_dynamic.face.verifier import (
    WEIGHT_FILES,
    FaceVerifier,
    TinyFaceNet,
    load_face_verifier,
    skipnet_verifier,
    standardize,
)
from vj_dynamic.flops import count_flops
from vj_dynamic.weights import save_weights

from vj.models import data_dir


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (40, CROP_SIZE, CROP_SIZE), dtype=np.uint8)


@pytest.fixture(scope="module")
def random_verifier() -> FaceVerifier:
    torch.manual_seed(0)
    return FaceVerifier(TinyFaceNet(), skipnet_verifier().eval(), threshold=0.9)


def test_standardize(crops):
    x = standardize(crops)
    assert x.shape == (40, 1, CROP_SIZE, CROP_SIZE) and x.dtype == torch.float32
    np.testing.assert_allclose(x.mean(dim=(1, 2, 3)).numpy(), 0, atol=1e-5)
    assert torch.all(x.std(dim=(1, 2, 3), correction=0) < 1.0)
    assert torch.all(x.std(dim=(1, 2, 3), correction=0) > 0.9)
    # Brightness and contrast do not matter.
    brighter = (crops.astype(np.float64) * 0.5 + 60).round().astype(np.uint8)
    assert float((standardize(brighter) - x).abs().mean()) < 0.05
    with pytest.raises(ValueError, match="uint8"):
        standardize(crops.astype(np.float32))


def test_tiny_net_counts_its_flops(crops):
    net = TinyFaceNet().eval()
    flops, logits = count_flops(net, standardize(crops[:1]))
    assert flops == net.flops() and 20_000 <= net.flops() // 2 <= 99_999
    assert logits.shape == (1, 2)
    with pytest.raises(ValueError, match="shape"):
        net(torch.zeros(2, 1, 20, 20))
    with pytest.raises(ValueError, match="channel"):
        TinyFaceNet(channels=(4, 8))


@pytest.mark.parametrize(("threshold", "stage"), [(0.0, 0), (1.5, 1)])
def test_threshold_routes_every_crop(random_verifier, crops, threshold, stage):
    v = FaceVerifier(random_verifier.tiny, random_verifier.skipnet, threshold)
    verdict = v.verify(crops)
    assert np.all(verdict.decided_by == stage)
    tiny_stats, skip_stats = verdict.stats.stages
    assert tiny_stats.inputs == 40 and skip_stats.inputs == (40 if stage else 0)
    expected = v.cascade.stages[stage].predict_proba(standardize(crops))[:, 1]
    np.testing.assert_allclose(verdict.face_probability, expected, rtol=1e-5, atol=1e-6)
    assert verdict.is_face.dtype == bool


def test_idk_defers_only_unsure_crops(random_verifier, crops):
    x = standardize(crops)
    tiny_p = random_verifier.cascade.stages[0].predict_proba(x)
    threshold = float(np.median(tiny_p.max(axis=1)))
    v = FaceVerifier(random_verifier.tiny, random_verifier.skipnet, threshold)
    verdict = v.verify(crops)
    np.testing.assert_array_equal(verdict.decided_by == 1, tiny_p.max(axis=1) < threshold)
    tiny_cost, skip_cost = (s.cost for s in verdict.stats.stages)
    assert tiny_cost == pytest.approx(40 * v.tiny.flops())
    assert skip_cost > 0 and verdict.stats.stages[1].inputs == int((verdict.decided_by == 1).sum())


def test_settled_crops_keep_the_tiny_answer(random_verifier, crops):
    x = standardize(crops)
    tiny_p = random_verifier.cascade.stages[0].predict_proba(x)
    threshold = float(np.median(tiny_p.max(axis=1)))
    v = FaceVerifier(random_verifier.tiny, random_verifier.skipnet, threshold)
    seen = {}

    def settle(probs, deferred):
        seen["probs"], seen["deferred"] = probs, deferred.copy()
        out = np.zeros(len(probs), bool)
        out[np.flatnonzero(deferred)[::2]] = True  # every other unsure crop
        return out

    verdict = v.verify(crops, settle=settle)
    np.testing.assert_allclose(seen["probs"], tiny_p, rtol=1e-5, atol=1e-6)
    unsure = tiny_p.max(axis=1) < threshold
    np.testing.assert_array_equal(seen["deferred"], unsure)
    settled = np.zeros(40, bool)
    settled[np.flatnonzero(unsure)[::2]] = True
    np.testing.assert_array_equal(verdict.decided_by == 1, unsure & ~settled)
    np.testing.assert_allclose(verdict.face_probability[settled], tiny_p[settled, 1], rtol=1e-5)
    assert verdict.stats.stages[1].inputs == int((unsure & ~settled).sum()) > 0
    full = v.verify(crops)
    rest = ~settled
    np.testing.assert_allclose(verdict.face_probability[rest], full.face_probability[rest],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="settle"):
        v.verify(crops, settle=lambda probs, deferred: deferred[:3])


def test_empty_and_bad_batches(random_verifier):
    verdict = random_verifier.verify(np.zeros((0, CROP_SIZE, CROP_SIZE), np.uint8))
    assert verdict.face_probability.shape == (0,) and verdict.stats.n_inputs == 0
    with pytest.raises(ValueError, match="shape"):
        random_verifier.verify(np.zeros((3, 24, 24), np.uint8))
    with pytest.raises(ValueError, match="TinyFaceNet"):
        FaceVerifier(torch.nn.Linear(2, 2), skipnet_verifier().eval(), 0.9)
    with pytest.raises(ValueError, match="two classes"):
        FaceVerifier(TinyFaceNet(), skipnet_verifier(num_classes=3).eval(), 0.9)


def test_save_load_round_trip(random_verifier, crops, tmp_path):
    random_verifier.skipnet.gate_threshold = 0.6
    random_verifier.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(WEIGHT_FILES.values())
    loaded = load_face_verifier(tmp_path)
    assert loaded.threshold == random_verifier.threshold
    assert loaded.skipnet.gate_threshold == pytest.approx(0.6)
    a, b = random_verifier.verify(crops), loaded.verify(crops)
    np.testing.assert_allclose(a.face_probability, b.face_probability, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.decided_by, b.decided_by)
    random_verifier.skipnet.gate_threshold = 0.5


@pytest.mark.parametrize("gate_norm", [False, True])
def test_load_reads_either_gate_kind(crops, tmp_path, gate_norm):
    """Gates with and without input standardisation load from their files alike."""
    torch.manual_seed(0)
    skipnet = skipnet_verifier(gate_norm=gate_norm)
    skipnet.train()
    skipnet(torch.randn(8, 1, CROP_SIZE, CROP_SIZE))  # running statistics move off 0 / 1
    v = FaceVerifier(TinyFaceNet(), skipnet.eval(), 0.9)
    v.save(tmp_path)
    loaded = load_face_verifier(tmp_path)
    keys = loaded.skipnet.state_dict()
    assert any(k.startswith("gates.norms.") for k in keys) == gate_norm
    np.testing.assert_allclose(loaded.verify(crops).face_probability,
                               v.verify(crops).face_probability, rtol=1e-5, atol=1e-6)


def test_load_reports_missing_and_mismatched_files(random_verifier, tmp_path):
    with pytest.raises(FileNotFoundError, match="verifier_tiny.pt"):
        load_face_verifier(tmp_path)
    random_verifier.save(tmp_path)
    settings = torch.load(tmp_path / WEIGHT_FILES["settings"], weights_only=True)
    settings["crop"] = torch.tensor([32, 4])

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for k, v in settings.items():
                self.register_buffer(k, v)

    save_weights(Holder(), tmp_path / WEIGHT_FILES["settings"])
    with pytest.raises(ValueError, match="crops"):
        load_face_verifier(tmp_path)


def test_shipped_weights_are_small_state_dicts():
    folder = data_dir()
    for name in WEIGHT_FILES.values():
        path = folder / name
        assert path.is_file(), f"{path} is not shipped"
        assert path.stat().st_size < 400_000
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())


def test_shipped_verifier_tells_faces_from_non_faces():
    # scikit-image's LFW sample: 100 tight face crops and 100 non-face patches (25 x 25).
    # The verifiers expect a little context around a face, so each face is shown slightly
    # zoomed out (replicated border); the non-faces are shown as they are.
    import cv2
    import skimage.data

    images, labels = skimage.data.lfw_subset(), np.r_[np.ones(100), np.zeros(100)]
    crops = []
    for image in images:
        u8 = np.clip(image * 255, 0, 255).astype(np.uint8)
        crops.append(cv2.resize(cv2.copyMakeBorder(u8, 2, 2, 2, 2, cv2.BORDER_REPLICATE),
                                (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA))
    verdict = load_face_verifier().verify(np.stack(crops))
    accuracy = float((verdict.is_face == (labels == 1)).mean())
    assert accuracy > 0.85, accuracy
    assert verdict.stats.stages[0].answered > 100  # the tiny CNN settles most of them
