"""``vj-train-verifier`` and ``eval_verifier`` end to end, on a small slice of the shared data.

Both run as their own processes, as a user runs them: they set PyTorch's thread count,
which is process-wide and is not changed safely once other tests have used the pool.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from vj_dynamic.face.verifier import WEIGHT_FILES, load_face_verifier


@pytest.fixture(scope="module")
def mini_data(shared_data, tmp_path_factory) -> Path:
    """The shared data's layout with a few files of each kind (links, not copies)."""
    root = tmp_path_factory.mktemp("mini_data")
    picks = {
        "faces/caltech36": ("*.jpg", 120),
        "nonfaces/cbcl24": ("*.png", 60),
        "backgrounds/umd": ("*.jpg", 40),
        "backgrounds/sun": ("*.jpg", 8),
    }
    for folder, (pattern, n) in picks.items():
        (root / folder).mkdir(parents=True)
        for path in sorted((shared_data / folder).glob(pattern))[:n]:
            (root / folder / path.name).symlink_to(path)
    for person in range(1, 21):
        (root / "orl" / f"s{person}").mkdir(parents=True)
        for k in (1, 2, 3):
            source = shared_data / "orl" / f"s{person}" / f"{k}.pgm"
            (root / "orl" / f"s{person}" / f"{k}.pgm").symlink_to(source)
    return root


REPO = Path(__file__).resolve().parent.parent


def run_app(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(mini_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verifier")
    done = run_app("vj_apps.train_verifier", "--data", str(mini_data), "--out", str(out),
                   "--workdir", str(out), "--quick", "--max-backgrounds", "6", "--scenes", "6",
                   "--tune-backgrounds", "4", "--tune-scenes", "4", "--bootstrap-backgrounds", "4",
                   "--bootstrap-scenes", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "weights in" in done.stderr
    return out


def test_train_verifier_writes_loadable_models_and_a_report(trained):
    for name in WEIGHT_FILES.values():
        assert (trained / name).is_file()
    verifier = load_face_verifier(trained)
    assert 0.5 <= verifier.threshold <= 1.0 + 1e-6
    report = json.loads((trained / "report.json").read_text())
    assert report["config"]["idk_eps"] == pytest.approx(0.001)
    assert report["first_round"]["hard_negatives"] >= 0
    idk = report["idk"]
    assert idk["cost_ratio"] == pytest.approx(idk["cascade_flops"] / idk["skipnet_flops"])
    assert (trained / "frontier.png").is_file()
    # The crop sets are cached under the settings that made them (crop geometry and
    # version included), and reused.
    from vj_dynamic.face.crops import CROPS_VERSION

    cached = sorted(p.name for p in trained.glob("crops-*.npz"))
    assert len(cached) == 2
    assert all(f"-c28m2v{CROPS_VERSION}-" in name for name in cached)


def test_eval_verifier_measures_every_target(mini_data, trained, tmp_path):
    out = tmp_path / "eval.json"
    done = run_app("vj_apps.eval_verifier", "--data", str(mini_data), "--models", str(trained),
                   "--workdir", str(tmp_path), "--eval-backgrounds", "3", "--eval-scenes", "3",
                   "--scenes", "3", "--frames", "2", "--repeats", "1", "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "false positives at equal recall" in done.stdout
    result = json.loads(out.read_text())
    crops = result["crops"]
    assert crops["n"] > 0 and 0 < crops["cost_ratio"] < 1.5
    detection = result["detection"]
    for name in ("cascade", "lenient", "pipeline", "opencv"):
        curve = detection[name]["curve"]
        assert 0 <= curve["recall"] <= 1
        assert curve["faces"] == detection["cascade"]["curve"]["faces"]
        rates = [curve["rate_at_fp"][k] for k in ("0", "5", "10", "25", "50", "100")]
        assert np.all(np.diff(rates) >= 0)
    assert set(detection["target"]) == {f"{d}/{k}" for d in ("cascade", "lenient", "opencv")
                                        for k in ("min_neighbors_3", "curve")}
    timing = result["timing"]["scenes with faces"]
    assert timing["frames"] == 2 and timing["cascade_ms"] > 0
    for name in ("pipeline", "pipeline, settled"):
        assert timing[name]["ratio"] > 0
        assert timing[name]["per_frame"]["verified"] >= timing[name]["per_frame"]["settled"] >= 0
    assert timing["pipeline"]["per_frame"]["settled"] == 0


def test_apps_report_bad_paths(tmp_path):
    done = run_app("vj_apps.train_verifier", "--data", str(tmp_path / "missing"),
                   "--workdir", str(tmp_path))
    assert done.returncode == 2 and "missing" in done.stderr
    done = run_app("vj_apps.eval_verifier", "--models", str(tmp_path / "none"))
    assert done.returncode == 2 and "not found" in done.stderr
    done = run_app("vj_apps.train_verifier", "--idk-eps", "2", "--workdir", str(tmp_path))
    assert done.returncode == 2 and "idk_eps" in done.stderr
