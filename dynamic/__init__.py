"""Dynamic neural networks that save time, not only FLOPs: IDK cascades and SkipNet.

Modules, in the order of the papers:

- :mod:`vj_dynamic.flops`, :mod:`vj_dynamic.latency`: measuring what ran (FLOPs, milliseconds);
- :mod:`vj_dynamic.idk`, :mod:`vj_dynamic.idk_tuning`, :mod:`vj_dynamic.idk_selection`:
  IDK cascades, their thresholds, and which stages earn their place;
- :mod:`vj_dynamic.gates`, :mod:`vj_dynamic.skipnet`, :mod:`vj_dynamic.skipnet_training`,
  :mod:`vj_dynamic.skipnet_rl`, :mod:`vj_dynamic.skipnet_policy`,
  :mod:`vj_dynamic.skipnet_runtime`: SkipNet, its training (supervised and hybrid RL),
  the spread of its per-input policies, and execution that skips;
- :mod:`vj_dynamic.bench.datasets`, :mod:`vj_dynamic.small_models`, :mod:`vj_dynamic.weights`,
  :mod:`vj_dynamic.bench.benchmark`: data, cheap stages, checkpoints, the benchmark;
- :mod:`vj_dynamic.face.crops`, :mod:`vj_dynamic.face.verifier`, :mod:`vj_dynamic.face.sources`,
  :mod:`vj_dynamic.face.training`, :mod:`vj_dynamic.face.pipeline`: the face verifiers (a tiny
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
    "IDKCascade": "vj_dynamic.idk",
    "Stage": "vj_dynamic.idk",
    "MaxProbRule": "vj_dynamic.idk",
    "EntropyRule": "vj_dynamic.idk",
    "LearnedDeferralRule": "vj_dynamic.idk",
    "CascadeResult": "vj_dynamic.idk",
    "torch_predict_proba": "vj_dynamic.idk",
    "sklearn_predict_proba": "vj_dynamic.idk",
    "tune_thresholds": "vj_dynamic.idk_tuning",
    "tune_lagrangian": "vj_dynamic.idk_tuning",
    "cost_accuracy_frontier": "vj_dynamic.idk_tuning",
    "plot_frontier": "vj_dynamic.idk_tuning",
    "SkipResNet": "vj_dynamic.skipnet",
    "skipnet38": "vj_dynamic.skipnet",
    "skipnet74": "vj_dynamic.skipnet",
    "skipnet110": "vj_dynamic.skipnet",
    "FFGateI": "vj_dynamic.gates",
    "FFGateII": "vj_dynamic.gates",
    "RNNGate": "vj_dynamic.gates",
    "train_hybrid_rl": "vj_dynamic.skipnet_rl",
    "fine_tune_on_policy": "vj_dynamic.skipnet_rl",
    "tune_gate_threshold": "vj_dynamic.skipnet_training",
    "PolicyReport": "vj_dynamic.skipnet_policy",
    "policy_report": "vj_dynamic.skipnet_policy",
    "select_stages": "vj_dynamic.idk_selection",
    "SkipNetRuntime": "vj_dynamic.skipnet_runtime",
    "SkipNetClassifier": "vj_dynamic.skipnet_runtime",
    "count_flops": "vj_dynamic.flops",
    "compare_latency": "vj_dynamic.latency",
    "save_weights": "vj_dynamic.weights",
    "load_weights": "vj_dynamic.weights",
    "extract_crops": "vj_dynamic.face.crops",
    "FaceVerifier": "vj_dynamic.face.verifier",
    "load_face_verifier": "vj_dynamic.face.verifier",
    "VerifiedDetector": "vj_dynamic.face.pipeline",
    "load_verifier": "vj_dynamic.face.pipeline",
    "TafeNet": "vj_dynamic.tafe",
    "embedding_loss": "vj_dynamic.tafe",
    "train_tafe": "vj_dynamic.tafe_training",
    "NeuralModuleNetwork": "vj_dynamic.nmn",
    "parse_question": "vj_dynamic.nmn_layout",
    "EnrolmentStore": "vj_dynamic.face.enrolment",
    "FaceRecogniser": "vj_dynamic.face.enrolment",
    "load_identity_model": "vj_dynamic.face.identity",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dynamic' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
