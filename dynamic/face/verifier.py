"""Neural face verifiers for cascade windows: a tiny CNN, a SkipNet, and their IDK cascade.

A lenient Viola-Jones cascade proposes windows; each is cut out with a little context
(:mod:`vj_dynamic.face.crops`) and judged face / not face. Two networks share the work:

1. :class:`TinyFaceNet`, three strided 3x3 convolutions and a linear layer (~70 k
   multiply-adds): cheap enough for every window, sure about most of them;
2. a SkipNet (:func:`skipnet_verifier`), a gated ResNet about a hundred times larger,
   which only sees the windows the tiny network is unsure about ("I don't know").

The built-in weights in ``data/`` are loaded by :func:`load_face_verifier`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from vj_dynamic.face.crops import CROP_MARGIN, CROP_SIZE
from vj_dynamic.flops import conv2d_flops, conv2d_output_size, linear_flops
from vj_dynamic.idk import (
    CascadeStats,
    IDKCascade,
    IDKRule,
    MaxProbRule,
    Stage,
    StageStats,
    torch_predict_proba,
)
from vj_dynamic.skipnet import SkipResNet
from vj_dynamic.skipnet_runtime import SkipNetClassifier
from vj_dynamic.weights import load_weights, save_weights

from vj.models import data_dir

__all__ = [
    "SKIPNET_CONFIG",
    "WEIGHT_FILES",
    "FaceVerifier",
    "TinyFaceNet",
    "Verdict",
    "load_face_verifier",
    "skipnet_verifier",
    "standardize",
]

#: The shipped files, in the models folder (``data/``, or ``$VJ_MODELS``).
WEIGHT_FILES = {
    "tiny": "verifier_tiny.pt",
    "skipnet": "verifier_skipnet.pt",
    "settings": "verifier_idk.pt",
}

#: Architecture of the SkipNet verifier (keyword arguments of :class:`SkipResNet`).
SKIPNET_CONFIG = {"depth": 14, "widths": (8, 16, 32), "gate": "rnn"}

# Added to each crop's standard deviation: flat crops (sky, walls) are not blown up
# into amplified noise, and the network sees them as the low-contrast patches they are.
_STD_FLOOR = 4.0


def standardize(crops: np.ndarray) -> torch.Tensor:
    """Crops ``(N, S, S)`` uint8 -> ``(N, 1, S, S)`` float32, each zero-mean, unit-spread.

    Removing each crop's own brightness and contrast makes the verifiers indifferent to
    lighting, as the cascade's variance normalisation makes it.
    """
    crops = np.asarray(crops)
    if crops.ndim != 3 or crops.dtype != np.uint8:
        raise ValueError(
            f"crops must be a (N, S, S) uint8 array, got {crops.dtype} of shape {crops.shape}"
        )
    n = crops.shape[0]
    # NumPy on flat rows: about five times faster than the same in torch for small crops.
    x = crops.reshape(n, -1).astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)
    std = np.sqrt(np.einsum("ij,ij->i", x, x) / max(x.shape[1], 1))
    x /= (std + _STD_FLOOR)[:, None]
    return torch.from_numpy(x.reshape(n, 1, *crops.shape[1:]))


class TinyFaceNet(nn.Module):
    """Three 3x3 stride-2 convolutions (1 -> c1 -> c2 -> c3 channels) and a linear read-out.

    Parameters
    ----------
    channels : (int, int, int), optional
        Output channels of the three convolutions.
    size : int, optional
        Side of the input crops.

    Notes
    -----
    With the defaults on 28 x 28 crops: 14 x 14, 7 x 7, then 4 x 4 maps, about 70 k
    multiply-adds per crop. The read-out sees the whole 4 x 4 map, not a global pool:
    where a pattern sits in the window (eyes above mouth) is what tells a face.
    """

    def __init__(self, channels: tuple[int, int, int] = (6, 12, 16), size: int = CROP_SIZE) -> None:
        super().__init__()
        if len(channels) != 3 or min(channels) < 1 or size < 8:
            raise ValueError(
                f"need 3 positive channel counts and size >= 8, got {channels}, {size}"
            )
        self.channels, self.size = tuple(int(c) for c in channels), int(size)
        c1, c2, c3 = self.channels
        self.conv1 = nn.Conv2d(1, c1, 3, 2, 1)
        self.conv2 = nn.Conv2d(c1, c2, 3, 2, 1)
        self.conv3 = nn.Conv2d(c2, c3, 3, 2, 1)
        side = self._sides()[-1]
        self.fc = nn.Linear(c3 * side * side, 2)

    def _sides(self) -> list[int]:
        sides = [self.size]
        for _ in range(3):
            sides.append(conv2d_output_size(sides[-1], 3, 2, 1))
        return sides

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, 2)`` (not face, face) for standardised crops ``(N, 1, S, S)``."""
        if x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[2:]) != (self.size, self.size):
            raise ValueError(
                f"input must have shape (N, 1, {self.size}, {self.size}), got {tuple(x.shape)}"
            )
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.fc(x.flatten(1))

    def flops(self) -> int:
        """Analytic FLOPs per crop (twice the multiply-adds; see :mod:`vj_dynamic.flops`)."""
        s = self._sides()
        c1, c2, c3 = self.channels
        return (conv2d_flops(1, c1, 3, s[1], s[1]) + conv2d_flops(c1, c2, 3, s[2], s[2])
                + conv2d_flops(c2, c3, 3, s[3], s[3]) + linear_flops(c3 * s[3] * s[3], 2))


def skipnet_verifier(**overrides) -> SkipResNet:
    """The SkipNet verifier: :data:`SKIPNET_CONFIG`, two classes, one input channel.

    Keyword arguments override any of these (tests build variants this way).
    """
    config = {**SKIPNET_CONFIG, "num_classes": 2, "in_channels": 1, **overrides}
    return SkipResNet(**config)


@dataclass(frozen=True)
class Verdict:
    """The verifiers' answer for a batch of crops.

    Attributes
    ----------
    face_probability : (N,) float64 ndarray
        Probability of "face" from the stage that decided.
    decided_by : (N,) int64 ndarray
        Index of that stage: 0 the tiny CNN, 1 the SkipNet.
    stats : CascadeStats
        Per stage: inputs, answers, FLOPs, milliseconds.
    """

    face_probability: np.ndarray
    decided_by: np.ndarray
    stats: CascadeStats

    @property
    def is_face(self) -> np.ndarray:
        """``(N,)`` bool: probability of a face above one half."""
        return self.face_probability > 0.5


class FaceVerifier:
    """The IDK cascade of the tiny CNN and the SkipNet, judging crops face / not face.

    Parameters
    ----------
    tiny : TinyFaceNet
        First stage.
    skipnet : SkipResNet
        Second stage (two classes, one channel); runs with closed blocks skipped.
    threshold : float
        The tiny CNN answers when its larger class probability is at least this, and
        passes the crop to the SkipNet otherwise. ``0.5`` or less: it answers always;
        above ``1``: it never does.
    dynamic : bool, optional
        Run the SkipNet with gates (``True``) or as the dense ResNet.

    Examples
    --------
    >>> import numpy as np
    >>> verifier = FaceVerifier(TinyFaceNet(), skipnet_verifier().eval(), threshold=0.9)
    >>> verdict = verifier.verify(np.zeros((3, 28, 28), np.uint8))
    >>> verdict.face_probability.shape, verdict.decided_by.shape
    ((3,), (3,))
    """

    def __init__(
        self, tiny: TinyFaceNet, skipnet: SkipResNet, threshold: float, *, dynamic: bool = True
    ) -> None:
        if not isinstance(tiny, TinyFaceNet) or not isinstance(skipnet, SkipResNet):
            raise ValueError("need a TinyFaceNet and a SkipResNet")
        if skipnet.num_classes != 2 or skipnet.in_channels != 1:
            raise ValueError("the SkipNet must take one channel and output two classes")
        if not np.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold}")
        self.tiny = tiny.eval()
        self.skipnet = skipnet.eval()
        self.size = tiny.size
        self.threshold = float(threshold)
        self.dynamic = dynamic
        self.skip_classifier = SkipNetClassifier(self.skipnet, dynamic=dynamic)
        dense = float(self.skipnet.flop_breakdown(self.size, self.size).dense())
        self.cascade = IDKCascade([
            Stage("tiny", torch_predict_proba(self.tiny, batch_size=256), float(tiny.flops()),
                  MaxProbRule(self.threshold)),
            Stage("skipnet", self.skip_classifier.predict_proba, dense),
        ], cost_unit="flops")

    @property
    def stage_names(self) -> tuple[str, ...]:
        """Names of the stages, in order."""
        return tuple(stage.name for stage in self.cascade.stages)

    def verify(
        self,
        crops: np.ndarray,
        *,
        settle: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    ) -> Verdict:
        """Judge crops ``(N, S, S)`` uint8 (from :func:`vj_dynamic.face.crops.extract_crops`).

        Parameters
        ----------
        crops : (N, S, S) uint8 ndarray
        settle : callable, optional
            ``settle(probabilities, deferred) -> (N,) bool``: given the tiny CNN's
            probabilities ``(N, 2)`` and where it is unsure, the unsure crops whose
            answer no longer matters (in a detector: those whose group the tiny CNN has
            already accepted). The tiny CNN's answer stands for them and the SkipNet
            does not run on them.

        Returns
        -------
        Verdict
        """
        crops = np.asarray(crops)
        if crops.ndim != 3 or crops.shape[1:] != (self.size, self.size):
            raise ValueError(
                f"crops must have shape (N, {self.size}, {self.size}), got {crops.shape}"
            )
        if len(crops) == 0:
            empty = CascadeStats(
                tuple(StageStats(name, 0, 0, 0.0, 0.0) for name in self.stage_names), 0)
            return Verdict(np.zeros(0), np.zeros(0, np.int64), empty)
        cascade = self.cascade
        if settle is not None:
            first, second = cascade.stages
            cascade = IDKCascade([
                Stage(first.name, first.predict_proba, first.cost,
                      _SettlingRule(first.rule, settle)),
                second,
            ], cost_unit=cascade.cost_unit)
        # Plain NCHW: with one channel it is the same memory as channels-last, and the
        # tiny CNN's small convolutions measured faster on it; the SkipNet runtime
        # picks its own layout.
        result = cascade.predict(standardize(crops))
        return Verdict(result.probabilities[:, 1].copy(), result.decided_by, result.stats)

    def warmup(self) -> FaceVerifier:
        """Run every stage once on blank crops, so that no first call pays for set-up."""
        x = standardize(np.zeros((2, self.size, self.size), np.uint8))
        for stage in self.cascade.stages:
            stage.predict_proba(x)
        return self

    def save(self, folder: str | Path) -> None:
        """Write the weights and settings into ``folder`` (see :data:`WEIGHT_FILES`)."""
        folder = Path(folder)
        save_weights(self.tiny, folder / WEIGHT_FILES["tiny"])
        save_weights(self.skipnet, folder / WEIGHT_FILES["skipnet"])
        save_weights(_Settings(self.threshold, self.skipnet.gate_threshold),
                     folder / WEIGHT_FILES["settings"])


class _SettlingRule(IDKRule):
    """``base``, except that it answers for unsure inputs that ``settle`` says no longer matter."""

    def __init__(self, base: IDKRule, settle: Callable[[np.ndarray, np.ndarray], np.ndarray]):
        self.base = base
        self.threshold = base.threshold
        self.settle = settle

    def confidence(self, probs: np.ndarray) -> np.ndarray:
        return self.base.confidence(probs)

    def idk(self, probs: np.ndarray) -> np.ndarray:
        deferred = self.base.idk(probs)
        if not deferred.any():
            return deferred
        settled = np.asarray(self.settle(probs, deferred), dtype=bool)
        if settled.shape != deferred.shape:
            raise ValueError(f"settle returned shape {settled.shape}, expected {deferred.shape}")
        return deferred & ~settled


class _Settings(nn.Module):
    """The cascade's tuned numbers as buffers, so they travel in a plain state dict."""

    def __init__(self, threshold: float = 0.5, gate_threshold: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("idk_threshold", torch.tensor(float(threshold), dtype=torch.float64))
        self.register_buffer("gate_threshold", torch.tensor(float(gate_threshold),
                                                            dtype=torch.float64))
        self.register_buffer("crop", torch.tensor([CROP_SIZE, CROP_MARGIN], dtype=torch.int64))


def load_face_verifier(folder: str | Path | None = None, *, dynamic: bool = True) -> FaceVerifier:
    """The shipped verifiers (or those saved by :meth:`FaceVerifier.save` in ``folder``).

    Weights are read with ``torch.load(..., weights_only=True)``.

    Raises
    ------
    FileNotFoundError
        When a file is missing, naming it.
    ValueError
        When the files were made for other crops than :mod:`vj_dynamic.face.crops` cuts.
    """
    folder = Path(folder) if folder is not None else data_dir()
    for name in WEIGHT_FILES.values():
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"verifier file {folder / name} not found; train one with vj-train-verifier"
            )
    settings = load_weights(_Settings(), folder / WEIGHT_FILES["settings"])
    if settings.crop.tolist() != [CROP_SIZE, CROP_MARGIN]:
        raise ValueError(
            f"{folder}: verifiers made for {settings.crop.tolist()} crops (size, margin), "
            f"this code cuts {[CROP_SIZE, CROP_MARGIN]}"
        )
    tiny = load_weights(TinyFaceNet(), folder / WEIGHT_FILES["tiny"])
    path = folder / WEIGHT_FILES["skipnet"]
    # Gates that standardise their inputs (``gate_norm``) keep running statistics;
    # weights from before they were used have none.
    names = torch.load(path, map_location="cpu", weights_only=True).keys()
    gate_norm = any(k.startswith("gates.norms.") for k in names)
    skipnet = load_weights(skipnet_verifier(gate_norm=gate_norm), path).eval()
    skipnet.gate_threshold = float(settings.gate_threshold)
    return FaceVerifier(tiny, skipnet, float(settings.idk_threshold), dynamic=dynamic)
