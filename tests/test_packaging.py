"""The built distributions: the sdist and the wheel carry the models, claim only the
project's import names, and the wheel's code finds its models where the wheel put them.

Built with ``python -m build --no-isolation`` from a copy of the sources (the working
tree stays clean); CI also installs the wheel into a fresh venv (see ``.ci/run``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import vj

REPO = Path(__file__).resolve().parent.parent
#: Import names the wheel may install: the project's own, nothing generic.
OWN_NAMES = {"vj", "vj_dynamic", "vj_apps", "vj_data"}
MODELS = ["frontalface.json", "frontalface.md", "verifier.md", "verifier_tiny.pt",
          "verifier_skipnet.pt", "verifier_idk.pt"]
PROGRAMS = {"vj", "vj-models", "vj-detect", "vj-webcam", "vj-bench", "vj-train-cascade",
            "vj-train-verifier"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> tuple[Path, Path]:
    """(sdist, wheel) built from a copy of the sources; the wheel is built from the sdist."""
    pytest.importorskip("build")
    root = tmp_path_factory.mktemp("pkg")
    src = root / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc", "*.egg-info")
    for folder in ("vj", "dynamic", "apps", "data"):
        shutil.copytree(REPO / folder, src / folder, ignore=skip)
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir",
                    str(root / "dist"), str(src)], check=True, capture_output=True,
                   timeout=600)
    (sdist,) = (root / "dist").glob("*.tar.gz")
    (wheel,) = (root / "dist").glob("*.whl")
    return sdist, wheel


def test_sdist_carries_the_models(dists):
    with tarfile.open(dists[0]) as tar:
        names = {Path(n).relative_to(Path(n).parts[0]).as_posix() for n in tar.getnames()
                 if len(Path(n).parts) > 1}
    assert {f"data/{m}" for m in MODELS} <= names
    assert {"setup.cfg", "pyproject.toml", "README.md", "vj/model_cache.py"} <= names


def test_wheel_carries_the_models_and_only_its_own_names(dists):
    with zipfile.ZipFile(dists[1]) as whl:
        names = whl.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = whl.read(f"{info}/entry_points.txt").decode()
        metadata = whl.read(f"{info}/METADATA").decode()
    assert {n.split("/")[0] for n in names} - {info} == OWN_NAMES
    assert {f"vj_data/{m}" for m in MODELS} <= set(names)
    assert f"Version: {vj.__version__}\n" in metadata
    scripts = {ln.split("=")[0].strip() for ln in entry_points.splitlines() if "=" in ln}
    assert scripts == PROGRAMS


def test_wheel_code_finds_its_models(dists, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(dists[1]) as whl:
        whl.extractall(site)
    code = (
        "import sys, vj, vj.models, vj_dynamic.face.verifier as v\n"
        "assert vj.__file__.startswith(sys.argv[1]), vj.__file__\n"
        "assert str(vj.models.data_dir()).startswith(sys.argv[1]), vj.models.data_dir()\n"
        "assert vj.load('frontalface').cascade.n_stages > 0\n"
        "v.load_face_verifier()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("VJ_MODELS", None)
    subprocess.run([sys.executable, "-c", code, str(site)], cwd=tmp_path, env=env,
                   check=True, timeout=300)
