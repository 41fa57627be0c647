"""The README's two promised commands exist, CI runs the test command verbatim and last,
and the install / OpenCV 5 instructions match what CI and the programs do."""

from __future__ import annotations

from pathlib import Path

from vj.model_cache import FETCH_COMMAND, OPENCV_CASCADES, OPENCV_TAG

REPO = Path(__file__).resolve().parent.parent


def _commands() -> list[str]:
    lines = REPO.joinpath("README.md").read_text().splitlines()[:20]
    return [ln.strip() for ln in lines if ln.strip().startswith("python3 -m venv")]


def _ci_commands() -> list[str]:
    lines = REPO.joinpath(".ci", "run").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def test_readme_opens_with_run_and_test_commands():
    cmds = _commands()
    assert len(cmds) == 2, cmds
    assert cmds[0].endswith("vj-webcam")
    assert "pytest" in cmds[1] and ".[test]" in cmds[1]


def test_ci_runs_the_readme_test_command_last():
    assert _ci_commands()[-1] == _commands()[1]


def test_ci_tries_the_wheel_as_users_install_it():
    ci = "\n".join(_ci_commands())
    assert "-m build" in ci and "dist/*.whl" in ci
    for program in ("vj-detect images", "vj-detect images --json verified.json --verify",
                    "vj-webcam --source demo --no-window --max-frames 30"):
        assert program in ci, program
    assert '{"vj", "vj_dynamic", "vj_apps", "vj_data"}' in ci


def test_readme_documents_installing_and_opencv5():
    readme = REPO.joinpath("README.md").read_text()
    assert "pip install dist/vj_faces-*.whl" in readme and "python -m build" in readme
    assert "## OpenCV 5 users" in readme and FETCH_COMMAND in readme
    assert f"tag {OPENCV_TAG}" in readme
    assert all(f"`opencv:{name}`" in readme for name in OPENCV_CASCADES)
