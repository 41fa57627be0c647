"""One OpenMP runtime per process, whichever of vj and PyTorch is imported first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Runs a parallel Numba kernel (a detection) and a PyTorch convolution with its
# backward pass, then lists the OpenMP runtimes mapped into the process.
PROBE = """
import numba, numpy as np, torch
import vj
image = np.random.default_rng(0).integers(0, 256, (240, 320), dtype=np.uint8)
vj.load("opencv:default").detect(image)
x = torch.randn(8, 1, 28, 28, requires_grad=True)
torch.nn.functional.conv2d(x, torch.randn(4, 1, 3, 3)).sum().backward()
maps = {line.split()[-1] for line in open("/proc/self/maps") if "gomp" in line}
print(numba.threading_layer(), len(maps))
"""


def probe(first: str) -> tuple[str, int]:
    code = f"import {first}\n" + PROBE
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    layer, runtimes = done.stdout.split()
    return layer, int(runtimes)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("first", ["vj", "dynamic", "apps", "torch"])
def test_one_openmp_runtime(first):
    layer, runtimes = probe(first)
    assert runtimes <= 1
    if first == "torch":
        # PyTorch's OpenMP came first: Numba keeps out of OpenMP altogether.
        assert layer == "workqueue"
    else:
        assert layer != "workqueue" or runtimes == 0
