"""The README's two promised commands exist, and CI runs the test command verbatim."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _commands() -> list[str]:
    lines = REPO.joinpath("README.md").read_text().splitlines()[:20]
    return [ln.strip() for ln in lines if ln.strip().startswith("python3 -m venv")]


def test_readme_opens_with_run_and_test_commands():
    cmds = _commands()
    assert len(cmds) == 2, cmds
    assert cmds[0].endswith("vj-webcam")
    assert "pytest" in cmds[1] and ".[test]" in cmds[1]


def test_ci_runs_the_readme_test_command():
    ci = REPO.joinpath(".ci", "run").read_text()
    assert _commands()[1] in ci.splitlines()
