"""The enrolment store (round trip, bad files) and the face-identity model's recognition."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from vj_dynamic.face.embedding import FaceEmbedder, augment
from vj_dynamic.face.enrolment import (
    MAX_CROPS,
    EnrolmentStore,
    default_store_path,
    face_crops,
)
from vj_dynamic.face.identity import FaceIdentityModel, load_identity_model
from vj_dynamic.flops import count_flops
from vj_dynamic.weights import save_weights


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small networks: one thread is faster than two, and far faster on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32), dtype=np.uint8)


def test_round_trip(tmp_path):
    store = EnrolmentStore(tmp_path / "sub" / "people.npz")
    store.enrol("Ada Lovelace", crops(3)).enrol("bob", crops(1, 1)).enrol("émile", crops(8, 2))
    path = store.save()
    assert path.is_file() and oct(path.stat().st_mode & 0o777) != "0o600"
    again = EnrolmentStore(path).load()
    assert again.names == ["Ada Lovelace", "bob", "émile"]
    assert np.array_equal(again.crops("bob"), crops(1, 1))
    assert len(again.crops("émile")) == MAX_CROPS
    assert again.forget("bob") and not again.forget("bob")
    again.save()
    assert EnrolmentStore(path).load().names == ["Ada Lovelace", "émile"]
    assert not list(tmp_path.joinpath("sub").glob(".*tmp"))  # no temporary files left


def test_re_enrolling_replaces_and_missing_file_is_empty(tmp_path):
    store = EnrolmentStore(tmp_path / "none.npz").load()
    assert len(store) == 0 and store.names == []
    store.enrol("ada", crops(2)).enrol("ada", crops(4, 3))
    assert store.names == ["ada"] and np.array_equal(store.crops("ada"), crops(4, 3))
    revision = store.revision
    store.forget("ada")
    assert store.revision > revision
    store.save()
    assert EnrolmentStore(store.path).load().names == []


@pytest.mark.parametrize("name", ["", "   ", "unknown", "Unknown", "a\nb", "x" * 65])
def test_bad_names(name, tmp_path):
    with pytest.raises(ValueError, match="name|unknown"):
        EnrolmentStore(tmp_path / "s.npz").enrol(name, crops(1))


def test_bad_crops(tmp_path):
    store = EnrolmentStore(tmp_path / "s.npz")
    with pytest.raises(ValueError, match="uint8"):
        store.enrol("ada", crops(2).astype(np.float32))
    with pytest.raises(ValueError, match="32x32"):
        store.enrol("ada", np.zeros((2, 24, 24), np.uint8))
    with pytest.raises(ValueError, match="K >= 1"):
        store.enrol("ada", np.zeros((0, 32, 32), np.uint8))


def _write(path, **arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


GOOD = {"format": np.asarray("vj-enrolments"), "version": np.asarray(1),
        "names": np.asarray(["ada"]), "counts": np.asarray([2]),
        "crops": np.zeros((2, 32, 32), np.uint8)}


@pytest.mark.parametrize("change, message", [
    ({"format": np.asarray("something-else")}, "format"),
    ({"version": np.asarray(7)}, "version 7"),
    ({"counts": np.asarray([3])}, "crops must be uint8 of shape"),
    ({"counts": np.asarray([0])}, "1 to 5 crops"),
    ({"names": np.asarray(["unknown"])}, "label of unmatched"),
    ({"names": np.asarray(["a", "a"]), "counts": np.asarray([1, 1])}, "enrolled twice"),
    ({"crops": np.zeros((2, 32, 32), np.float32)}, "crops must be uint8"),
    ({"names": None}, "missing names"),
])
def test_bad_files_name_the_problem(tmp_path, change, message):
    arrays = {k: v for k, v in (GOOD | change).items() if v is not None}
    path = tmp_path / "people.npz"
    _write(path, **arrays)
    with pytest.raises(ValueError, match=message) as info:
        EnrolmentStore(path).load()
    assert str(path) in str(info.value)


def test_garbage_and_pickled_files_are_refused(tmp_path):
    path = tmp_path / "people.npz"
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="not a readable enrolment file"):
        EnrolmentStore(path).load()
    _write(path, **(GOOD | {"names": np.asarray([{"evil": 1}], dtype=object)}))
    with pytest.raises(ValueError, match=str(path)):
        EnrolmentStore(path).load()


def test_default_location(monkeypatch, tmp_path):
    monkeypatch.setenv("VJ_HOME", str(tmp_path / "home"))
    assert default_store_path() == tmp_path / "home" / "enrolments.npz"
    monkeypatch.delenv("VJ_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_store_path() == tmp_path / "xdg" / "vj" / "enrolments.npz"


def test_face_crops_cut_the_box():
    image = np.zeros((100, 120), np.uint8)
    image[20:60, 30:70] = 200
    cut = face_crops(image, np.array([[30, 20, 40, 40]]))
    assert cut.shape == (1, 32, 32)
    assert cut[0, 4:28, 4:28].mean() > 190 and cut[0, 0, 0] < 40


def test_embedder_shapes_flops_and_augment():
    torch.manual_seed(0)
    net = FaceEmbedder()
    features = net.embed(crops(5))
    assert features.shape == (5, 64)
    torch.testing.assert_close(features.norm(dim=1), torch.ones(5))
    measured, _ = count_flops(net.eval(), torch.zeros(1, 1, 32, 32))
    assert measured == net.flops()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 32, 32)
    assert augment(x, generator).shape == x.shape
    assert net.embed_views(crops(4), 2).shape == (3, 4, 64)


def test_identity_model_scores_and_file(tmp_path):
    torch.manual_seed(0)
    model = FaceIdentityModel(threshold=0.25).eval()
    people = [crops(3, 1), crops(1, 2)]
    tasks = model.tasks(people)
    scores = model.scores(model.embed(np.concatenate([crops(2, 1), crops(1, 2)])), tasks)
    assert scores.shape == (3, 2)
    # An enrolled crop matches its own person best (the untrained model is cosine matching).
    assert scores[2].argmax() == 1
    path = save_weights(model, tmp_path / "tafe.pt")
    loaded = load_identity_model(path)
    assert float(loaded.threshold) == 0.25
    np.testing.assert_allclose(loaded.scores(loaded.embed(crops(2, 1)), loaded.tasks(people)),
                               scores[:2], rtol=1e-5, atol=1e-5)
    torch.save({"other": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="face-identity weights"):
        load_identity_model(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no weights file"):
        load_identity_model(tmp_path / "missing.pt")
    assert os.path.getsize(path) < 1_000_000


# ------------------------------------------------------------- the webcam flow


def _face_folder(tmp_path):
    """A folder with one image: demo frame 0 cut around its face at (394, 28, 68, 68)."""
    import cv2
    from vj_apps.webcam.demo import demo_frame

    folder = tmp_path / "alice"
    folder.mkdir()
    cv2.imwrite(str(folder / "alice.png"), demo_frame(0)[0:160, 330:530])
    return folder


def test_webcam_enrols_from_a_folder_and_labels_the_demo(tmp_path, capsys):
    import json

    from vj_apps.webcam import cli as webcam

    store, jsonl = tmp_path / "people.npz", tmp_path / "run.jsonl"
    rc = webcam.main(["--source", "demo", "--no-window", "--no-verify", "--max-frames", "3",
                      "--enrolments", str(store), "--enrol", f"alice={_face_folder(tmp_path)}",
                      "--json", str(jsonl)])
    assert rc == 0
    assert "enrolled alice" in capsys.readouterr().err
    assert EnrolmentStore(store).load().names == ["alice"]
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 3
    for record in records:
        names = record["names"]
        assert len(names) == len(record["boxes"]) and set(names) <= {"alice", "unknown"}
        near = [n for (x, y, *_), n in zip(record["boxes"], names, strict=True)
                if abs(x - 394) < 12 and abs(y - 28) < 12]
        assert near == ["alice"], record
        assert names.count("alice") == 1

    assert webcam.main(["--enrolments", str(store), "--list-enrolled"]) == 0
    assert "alice (1 crops)" in capsys.readouterr().out
    assert webcam.main(["--enrolments", str(store), "--forget", "alice"]) == 0
    assert EnrolmentStore(store).load().names == []
    assert webcam.main(["--enrolments", str(store), "--forget", "alice"]) == 2
    assert "not enrolled" in capsys.readouterr().err


def test_webcam_enrol_errors(tmp_path, capsys):
    from vj_apps.webcam import cli as webcam

    empty = tmp_path / "empty"
    empty.mkdir()
    import cv2

    cv2.imwrite(str(empty / "flat.png"), np.full((120, 120), 90, np.uint8))
    for option, message in ((f"bob={empty}", "no face found"), ("bob", "NAME=DIR"),
                            (f"bob={tmp_path / 'missing'}", "no such folder"),
                            (f"unknown={_face_folder(tmp_path)}", "label of unmatched")):
        rc = webcam.main(["--source", "demo", "--no-window", "--no-verify", "--max-frames", "1",
                          "--enrolments", str(tmp_path / "p.npz"), "--enrol", option])
        assert rc == 2, option
        assert message in capsys.readouterr().err, option
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    assert webcam.main(["--enrolments", str(tmp_path / "bad.npz"), "--list-enrolled"]) == 2
    assert "not a readable enrolment file" in capsys.readouterr().err


def test_the_e_key_enrols_the_largest_face(tmp_path):
    from vj_apps.webcam.demo import demo_frame
    from vj_apps.webcam.detectors import DetectorSwitch, load_cascade
    from vj_apps.webcam.loop import Settings, run
    from vj_apps.webcam.recognition import ENROL_EVERY, open_recognition
    from vj_apps.webcam.sources import FrameSource

    class Frames(FrameSource):
        name, fps = "frames", 30.0

        def __init__(self, n):
            super().__init__()
            self.frames = [demo_frame(0)] * n

        def read(self):
            return self.frames.pop() if self.frames else None

    class KeyWindow:  # presses e after the first frame
        def __init__(self):
            self.polls = 0

        def show(self, frame):
            pass

        def poll(self, delay_ms):
            self.polls += 1
            return "enrol" if self.polls == 1 else None

        def close(self):
            pass

    recognition = open_recognition(tmp_path / "people.npz")
    cascade = load_cascade(None)[0]
    frames = 1 + ENROL_EVERY * MAX_CROPS + 1
    run(Frames(frames), DetectorSwitch(cascade, None, verify=False),
        Settings(scale_factor=1.2, min_size=48), window=KeyWindow(), recognition=recognition,
        report=lambda text: None)
    store = EnrolmentStore(tmp_path / "people.npz").load()
    assert store.names == ["person 1"] and len(store.crops("person 1")) == MAX_CROPS
    assert recognition.enrolling is None


def test_without_the_identity_model(tmp_path, monkeypatch, capsys):
    from vj_apps.webcam import cli as webcam
    from vj_apps.webcam.recognition import open_recognition

    monkeypatch.setenv("VJ_MODELS", str(tmp_path / "no-models"))
    recognition = open_recognition(tmp_path / "people.npz")  # nobody enrolled: fine
    assert recognition.label(np.zeros((50, 50), np.uint8), np.zeros((0, 4))) is None
    assert "not available" in recognition.start("ada") and recognition.enrolling is None
    rc = webcam.main(["--source", "demo", "--no-window", "--no-verify", "--max-frames", "1",
                      "--enrolments", str(tmp_path / "people.npz"),
                      "--enrol", f"ada={_face_folder(tmp_path)}"])
    assert rc == 2 and "face recognition is not available" in capsys.readouterr().err


def test_embedder_training_resumes_from_its_checkpoint(tmp_path):
    from vj_dynamic.face.embedding import EmbedderTrainConfig, train_embedder

    config = EmbedderTrainConfig(epochs=2, batch_size=8)
    checkpoint = tmp_path / "embedder.pt"
    train_embedder(crops(16), config, checkpoint=checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    assert state["epoch"] == 2
    # Mark the checkpoint: a finished run given it again must return exactly its weights.
    state["net"]["fc.bias"] = torch.full_like(state["net"]["fc.bias"], 7.0)
    torch.save(state, checkpoint)
    again = train_embedder(crops(16), config, checkpoint=checkpoint)
    assert torch.equal(again.fc.bias, torch.full_like(again.fc.bias, 7.0))
    with pytest.raises(ValueError, match="other settings"):
        train_embedder(crops(16), EmbedderTrainConfig(epochs=3, batch_size=8),
                       checkpoint=checkpoint)
    with pytest.raises(ValueError, match="at least 8"):
        train_embedder(crops(4), config)


def test_head_training_and_threshold_on_synthetic_people():
    from vj_dynamic.face.identity import IdentitySet
    from vj_dynamic.face.identity_training import choose_threshold, train_head
    from vj_dynamic.tafe_training import TafeTrainConfig

    rng = np.random.default_rng(1)
    people = np.repeat(np.arange(8), 7)
    base = rng.integers(0, 256, (8, 32, 32))
    faces = np.clip(base[people] + rng.normal(0, 25, (len(people), 32, 32)), 0, 255)
    identities = IdentitySet(faces.astype(np.uint8), people, [str(i) for i in range(8)])
    embedder = FaceEmbedder().eval()
    head = train_head(embedder, identities, np.arange(5), TafeTrainConfig(steps=10))
    again = train_head(embedder, identities, np.arange(5), TafeTrainConfig(steps=10))
    for a, b in zip(head.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # seeded: runs repeat
    threshold = choose_threshold(head, embedder.embed(identities.crops).numpy(), people,
                                 np.arange(5, 8), per_person=2)
    assert np.isfinite(threshold)
