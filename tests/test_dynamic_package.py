"""The package re-exports its main names lazily."""

import subprocess
import sys

import pytest


def test_package_exports_resolve():
    import vj_dynamic

    for name in vj_dynamic.__all__:
        assert getattr(vj_dynamic, name) is not None
    with pytest.raises(AttributeError):
        vj_dynamic.no_such_name  # noqa: B018


def test_import_is_cheap():
    code = "import sys, vj_dynamic; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
