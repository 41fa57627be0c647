"""The package re-exports its main names lazily."""

import subprocess
import sys

import pytest


def test_package_exports_resolve():
    import dynamic

    for name in dynamic.__all__:
        assert getattr(dynamic, name) is not None
    with pytest.raises(AttributeError):
        dynamic.no_such_name  # noqa: B018


def test_import_is_cheap():
    code = "import sys, dynamic; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
