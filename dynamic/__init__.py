"""Dynamic neural networks that save time, not only FLOPs: IDK cascades and SkipNet.

Modules, in the order of the papers:

- :mod:`dynamic.flops`, :mod:`dynamic.latency`: measuring what ran (FLOPs, milliseconds);
- :mod:`dynamic.idk`, :mod:`dynamic.idk_tuning`: IDK cascades and their thresholds;
- :mod:`dynamic.gates`, :mod:`dynamic.skipnet`, :mod:`dynamic.skipnet_training`,
  :mod:`dynamic.skipnet_runtime`: SkipNet, its training, and execution that skips;
- :mod:`dynamic.datasets`, :mod:`dynamic.small_models`, :mod:`dynamic.weights`,
  :mod:`dynamic.benchmark`: data, cheap stages, checkpoints, the benchmark;
- :mod:`dynamic.crops`, :mod:`dynamic.verifier`, :mod:`dynamic.verifier_data`,
  :mod:`dynamic.verifier_training`, :mod:`dynamic.pipeline`: the face verifiers (a tiny
  CNN and a SkipNet as an IDK cascade) and the detector that runs them on a Haar
  cascade's windows.

The main names are re-exported here, imported on first use so that ``import dynamic``
does not load PyTorch for code that needs only a NumPy helper.
"""

from __future__ import annotations

import importlib
from typing import Any

# vj starts Numba's threads, which must happen before PyTorch loads (see vj.threads);
# every submodule of this package imports PyTorch.
import vj  # noqa: F401

_EXPORTS = {
    "IDKCascade": "dynamic.idk",
    "Stage": "dynamic.idk",
    "MaxProbRule": "dynamic.idk",
    "EntropyRule": "dynamic.idk",
    "LearnedDeferralRule": "dynamic.idk",
    "CascadeResult": "dynamic.idk",
    "torch_predict_proba": "dynamic.idk",
    "sklearn_predict_proba": "dynamic.idk",
    "tune_thresholds": "dynamic.idk_tuning",
    "tune_lagrangian": "dynamic.idk_tuning",
    "cost_accuracy_frontier": "dynamic.idk_tuning",
    "plot_frontier": "dynamic.idk_tuning",
    "SkipResNet": "dynamic.skipnet",
    "skipnet38": "dynamic.skipnet",
    "skipnet74": "dynamic.skipnet",
    "skipnet110": "dynamic.skipnet",
    "FFGateI": "dynamic.gates",
    "FFGateII": "dynamic.gates",
    "RNNGate": "dynamic.gates",
    "SkipNetRuntime": "dynamic.skipnet_runtime",
    "SkipNetClassifier": "dynamic.skipnet_runtime",
    "count_flops": "dynamic.flops",
    "compare_latency": "dynamic.latency",
    "save_weights": "dynamic.weights",
    "load_weights": "dynamic.weights",
    "extract_crops": "dynamic.crops",
    "FaceVerifier": "dynamic.verifier",
    "load_face_verifier": "dynamic.verifier",
    "VerifiedDetector": "dynamic.pipeline",
    "load_verifier": "dynamic.pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dynamic' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
