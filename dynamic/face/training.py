"""Training the face verifiers and tuning their IDK cascade.

1. The SkipNet verifier is trained with :mod:`vj_dynamic.skipnet_training`: the dense
   ResNet, then supervised gates, then hybrid reinforcement learning that pays for
   skipped blocks; its gate threshold is set on the ``tune`` crops.
2. The tiny CNN learns from the labels and from the SkipNet's probabilities
   (knowledge distillation): copying a stronger network's confidence makes the cheap
   stage's own confidence a better signal of when to defer.
3. The deferral threshold of the tiny CNN is the cheapest one whose cascade is as
   accurate on the ``tune`` crops as the SkipNet alone
   (:func:`vj_dynamic.idk_tuning.tune_thresholds`).
4. Bootstrapping, as for the cascade itself: the windows the trained verifiers wrongly
   accept on more training photographs (:func:`mine_hard_negatives`) join the
   negatives, and both networks are trained again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from vj_dynamic.face.crop_sets import CropSet
from vj_dynamic.face.crops import extract_crops
from vj_dynamic.face.verifier import FaceVerifier, TinyFaceNet, skipnet_verifier, standardize
from vj_dynamic.idk import MaxProbRule
from vj_dynamic.idk_tuning import cost_accuracy_frontier, tune_thresholds
from vj_dynamic.skipnet import SkipResNet
from vj_dynamic.skipnet_training import (
    TrainConfig,
    evaluate,
    train_dense,
    train_hybrid_rl,
    train_supervised_gates,
    tune_gate_threshold,
)

from vj.metrics import box_iou

__all__ = [
    "VerifierTrainConfig",
    "crop_tensors",
    "mine_hard_negatives",
    "stage_probabilities",
    "train_skipnet",
    "train_tiny",
    "train_verifiers",
    "tune_idk",
]


@dataclass(frozen=True)
class VerifierTrainConfig:
    """Settings of :func:`train_verifiers`.

    Attributes
    ----------
    dense_epochs, gate_epochs, rl_epochs : int
        SkipNet phases: dense ResNet, supervised gates, hybrid RL.
    skipnet_lr : float
        Peak AdamW learning rate of the dense phase (later phases use a fifth).
    rl_alpha : float
        Reward for skipping every block, against the classification loss. The hybrid
        RL prices each skipped block by its FLOPs and normalises the advantages, so
        this is a price per sample's FLOP share: at 1.0 the gates of the verifier
        trained on real-photo crops collapsed to running a fifth of the blocks (tune
        accuracy 0.92 against 0.97 dense); 0.1 is the RL's own default.
    gate_accuracy_drop : float
        Tune accuracy the gate threshold may give up against the gates at 0.5.
    tiny_epochs : int
        Epochs of the tiny CNN.
    tiny_lr : float
        Peak AdamW learning rate of the tiny CNN.
    distill : float
        Weight of the SkipNet's softened probabilities in the tiny CNN's loss.
    temperature : float
        Softening temperature of distillation.
    batch_size : int
    idk_eps : float
        Relative accuracy the IDK cascade may lose against the SkipNet alone on the
        tuning crops. Demanding exact equality picks the one threshold at which a few
        tuning crops happen to come out right, deferring about twice as many crops as
        a threshold a tenth of a point looser, which is as accurate on held-out crops.
    seed : int
    """

    dense_epochs: int = 3
    gate_epochs: int = 1
    rl_epochs: int = 2
    skipnet_lr: float = 0.1
    rl_alpha: float = 0.1
    gate_accuracy_drop: float = 0.001
    tiny_epochs: int = 40
    tiny_lr: float = 6e-3
    distill: float = 0.7
    temperature: float = 2.0
    batch_size: int = 128
    idk_eps: float = 0.001
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.dense_epochs, self.tiny_epochs, self.batch_size) < 1:
            raise ValueError("dense_epochs, tiny_epochs and batch_size must be >= 1")
        if min(self.gate_epochs, self.rl_epochs) < 0 or self.rl_alpha < 0:
            raise ValueError("gate_epochs, rl_epochs and rl_alpha must be >= 0")
        if not 0.0 <= self.distill <= 1.0 or self.temperature <= 0:
            raise ValueError(f"need 0 <= distill <= 1 and temperature > 0, got "
                             f"{self.distill}, {self.temperature}")
        if not 0.0 <= self.idk_eps < 1.0:
            raise ValueError(f"idk_eps must be in [0, 1), got {self.idk_eps}")


def crop_tensors(crops: CropSet, *, flip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised inputs ``(N, 1, S, S)`` and labels ``(N,)``; with mirror images if ``flip``."""
    if len(crops) == 0:
        raise ValueError("no crops")
    x = standardize(crops.crops)
    y = torch.from_numpy(crops.labels.astype(np.int64))
    if flip:
        x, y = torch.cat([x, x.flip(3)]), torch.cat([y, y])
    return x, y


def stage_probabilities(
    verifier: FaceVerifier, x: torch.Tensor, batch: int = 1024
) -> list[np.ndarray]:
    """Every stage's class probabilities on every input ``(N, 2)``, and the SkipNet's FLOPs.

    Returns
    -------
    list of ndarray
        ``[tiny (N, 2), skipnet (N, 2), skipnet FLOPs (N,)]``.
    """
    tiny_stage, skip_stage = verifier.cascade.stages
    starts = range(0, len(x), batch)
    tiny = np.concatenate([tiny_stage.predict_proba(x[i:i + batch]) for i in starts])
    skip, cost = [], []
    for i in starts:
        skip.append(skip_stage.predict_proba(x[i:i + batch]))
        cost.append(verifier.skip_classifier.last_cost)
    return [tiny, np.concatenate(skip), np.concatenate(cost)]


def train_skipnet(
    x: torch.Tensor,
    y: torch.Tensor,
    x_tune: torch.Tensor,
    y_tune: torch.Tensor,
    config: VerifierTrainConfig,
    log: Callable[[str], None] = print,
) -> tuple[SkipResNet, dict[str, Any]]:
    """Dense ResNet, supervised gates, hybrid RL; then the gate threshold on ``tune``."""
    torch.manual_seed(config.seed)
    model = skipnet_verifier()
    report: dict[str, Any] = {}

    def phase(name: str, fn, epochs: int, lr: float, **kwargs) -> None:
        if epochs == 0:
            return
        t0 = time.perf_counter()
        cfg = TrainConfig(epochs=epochs, batch_size=config.batch_size, lr=lr, max_shift=1,
                          seed=config.seed)
        history = fn(model, x, y, cfg, **kwargs)
        result = evaluate(model, x_tune, y_tune,
                          execution="dense" if name == "dense" else "skip")
        report[name] = {"history": history, "tune_accuracy": result.accuracy,
                        "execution_rate": result.execution_rate,
                        "seconds": time.perf_counter() - t0}
        log(f"skipnet {name}: tune accuracy {result.accuracy:.4f}, blocks run "
            f"{result.execution_rate:.2f}, {time.perf_counter() - t0:.0f} s")

    phase("dense", train_dense, config.dense_epochs, config.skipnet_lr)
    phase("gates", train_supervised_gates, config.gate_epochs, config.skipnet_lr / 5)
    phase("rl", train_hybrid_rl, config.rl_epochs, config.skipnet_lr / 5, alpha=config.rl_alpha)
    model.gate_threshold = 0.5
    reference = evaluate(model, x_tune, y_tune).accuracy
    threshold, table = tune_gate_threshold(
        model, x_tune, y_tune, min_accuracy=reference - config.gate_accuracy_drop)
    report["gate_threshold"] = threshold
    report["gate_table"] = table
    log(f"skipnet gate threshold {threshold}: " + ", ".join(
        f"{t}: acc {a:.4f} {f / 1e6:.2f} MFLOP" for t, a, f in table))
    return model.eval(), report


def train_tiny(
    x: torch.Tensor,
    y: torch.Tensor,
    teacher: np.ndarray | None,
    config: VerifierTrainConfig,
    log: Callable[[str], None] = print,
) -> TinyFaceNet:
    """Train the tiny CNN on labels and, if given, the teacher's probabilities ``(N, 2)``."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    net = TinyFaceNet()
    soft = None
    if teacher is not None and config.distill > 0:
        if teacher.shape != (len(x), 2):
            raise ValueError(f"teacher must have shape ({len(x)}, 2), got {teacher.shape}")
        logits = torch.log(torch.from_numpy(teacher).float().clamp_min(1e-7))
        soft = torch.softmax(logits / config.temperature, dim=1)
    batch = 2 * config.batch_size
    steps = config.tiny_epochs * -(-len(x) // batch)
    optimizer = torch.optim.AdamW(net.parameters(), config.tiny_lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.tiny_lr, total_steps=steps)
    t0 = time.perf_counter()
    for epoch in range(config.tiny_epochs):
        net.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), batch):
            index = order[start:start + batch]
            out = net(x[index])
            loss = F.cross_entropy(out, y[index])
            if soft is not None:
                t = config.temperature
                kl = F.kl_div(F.log_softmax(out / t, dim=1), soft[index], reduction="batchmean")
                loss = (1 - config.distill) * loss + config.distill * t * t * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        if epoch == config.tiny_epochs - 1 or epoch % 5 == 0:
            log(f"tiny epoch {epoch}: loss {total / len(x):.4f}, "
                f"{time.perf_counter() - t0:.0f} s")
    return net.eval()


def tune_idk(
    tiny: TinyFaceNet,
    skipnet: SkipResNet,
    x_tune: torch.Tensor,
    y_tune: torch.Tensor,
    eps: float = 0.0,
) -> tuple[FaceVerifier, dict[str, Any]]:
    """The cheapest deferral threshold with the SkipNet's accuracy (within ``eps``).

    Returns
    -------
    verifier : FaceVerifier
        With the chosen threshold.
    report : dict
        Accuracies and mean FLOPs of each stage alone and of the cascade, the chosen
        point and the cost / accuracy frontier.
    """
    probe = FaceVerifier(tiny, skipnet, threshold=1.0)
    tiny_p, skip_p, skip_cost = stage_probabilities(probe, x_tune)
    labels = y_tune.numpy()
    rule = MaxProbRule()
    confidences = [rule.confidence(tiny_p), rule.confidence(skip_p)]
    correct = [tiny_p.argmax(1) == labels, skip_p.argmax(1) == labels]
    costs = [float(tiny.flops()), skip_cost]
    result = tune_thresholds(confidences, correct, costs, eps=eps)
    # tune_thresholds answers on ">=" an observed confidence; the rule defers on "<".
    threshold = float(np.clip(result.point.thresholds[0], 0.0, 1.0 + 1e-9))
    verifier = FaceVerifier(tiny, skipnet, threshold)
    frontier = cost_accuracy_frontier(confidences, correct, costs)
    report = {
        "threshold": threshold,
        "feasible": result.feasible,
        "tiny_accuracy": float(correct[0].mean()),
        "skipnet_accuracy": float(correct[1].mean()),
        "cascade_accuracy": result.point.accuracy,
        "tiny_flops": float(tiny.flops()),
        "skipnet_flops": float(skip_cost.mean()),
        "skipnet_dense_flops": float(skipnet.flop_breakdown(tiny.size, tiny.size).dense()),
        "cascade_flops": result.point.cost,
        "cost_ratio": result.point.cost / float(skip_cost.mean()),
        "deferred": float((confidences[0] < threshold).mean()),
        "frontier": [asdict(p) for p in frontier],
    }
    return verifier, report


def train_verifiers(
    train: CropSet,
    tune: CropSet,
    config: VerifierTrainConfig | None = None,
    log: Callable[[str], None] = print,
) -> tuple[FaceVerifier, dict[str, Any]]:
    """Train both verifiers on ``train`` and tune the cascade on ``tune``.

    Returns
    -------
    verifier : FaceVerifier
    report : dict
        The SkipNet phases, the tiny CNN's training time and :func:`tune_idk`'s report.
    """
    config = config or VerifierTrainConfig()
    x, y = crop_tensors(train)
    x_tune, y_tune = crop_tensors(tune)
    t0 = time.perf_counter()
    skipnet, skip_report = train_skipnet(x, y, x_tune, y_tune, config, log)
    skip_seconds = time.perf_counter() - t0
    x_flip, y_flip = crop_tensors(train, flip=True)
    teacher = stage_probabilities(FaceVerifier(TinyFaceNet(), skipnet, 1.0), x_flip)[1]
    t1 = time.perf_counter()
    tiny = train_tiny(x_flip, y_flip, teacher, config, log)
    tiny_seconds = time.perf_counter() - t1
    verifier, idk_report = tune_idk(tiny, skipnet, x_tune, y_tune, config.idk_eps)
    log(f"IDK threshold {idk_report['threshold']:.6f}: accuracy tiny "
        f"{idk_report['tiny_accuracy']:.4f}, skipnet {idk_report['skipnet_accuracy']:.4f}, "
        f"cascade {idk_report['cascade_accuracy']:.4f}; cost ratio "
        f"{idk_report['cost_ratio']:.3f}, deferred {idk_report['deferred']:.3f}")
    report = {"config": asdict(config), "skipnet": skip_report, "idk": idk_report,
              "seconds": {"skipnet": skip_seconds, "tiny": tiny_seconds},
              "train_counts": train.counts(), "tune_counts": tune.counts()}
    return verifier, report


def mine_hard_negatives(
    images,
    detectors,
    verifier: FaceVerifier,
    rng: np.random.Generator,
    *,
    scale_factor: float = 1.1,
    max_per_image: int = 20,
    negative_iou: float = 0.3,
) -> CropSet:
    """Windows the cascades propose and the verifiers wrongly call faces.

    Parameters
    ----------
    images : iterable of (gray image, (K, 4) face boxes)
        Training images with every face boxed (none for background photos).
    detectors : sequence of vj.CascadeDetector
        The lenient cascades; the union of their windows is judged.
    verifier : FaceVerifier
        The verifiers to find mistakes of.
    rng : Generator
        Draws the subsample kept per image.
    scale_factor : float, optional
    max_per_image : int, optional
    negative_iou : float, optional
        A window is a mistake when the verifiers accept it and it overlaps every face
        by less than this.

    Returns
    -------
    CropSet
        Labelled 0, source ``"hard"``.
    """
    parts, n = [], 0
    for image, faces in images:
        found = [d.candidates(image, scale_factor) for d in detectors]
        cand = np.unique(np.concatenate(found), axis=0)
        if len(cand) == 0:
            continue
        crops = extract_crops(image, cand)
        accepted = verifier.verify(crops).is_face
        faces = np.asarray(faces, np.float64).reshape(-1, 4)
        if len(faces):
            accepted &= box_iou(cand, faces).max(axis=1) < negative_iou
        index = np.flatnonzero(accepted)
        if index.size > max_per_image:
            index = np.sort(rng.choice(index, max_per_image, replace=False))
        if index.size:
            parts.append(crops[index])
            n += index.size
    crops = (np.concatenate(parts) if parts
             else np.zeros((0, verifier.size, verifier.size), np.uint8))
    return CropSet(crops, np.zeros(n, np.int64), np.full(n, "hard", dtype="<U10"))
