"""IDK cascades: a chain of classifiers ordered by cost, each allowed to say "I don't know".

Stage ``k`` sees only the inputs every earlier stage declined, answers those it is sure
about, and passes the rest on (gather, run, scatter: the work of later stages on
answered inputs is never done). The last stage answers everything, or, with
``abstain=True``, applies its own rule and leaves the inputs it is unsure about
unanswered (prediction ``-1``) for a human or a fallback.

A stage is any callable returning class probabilities for a batch (a PyTorch module
wrapped by :func:`torch_predict_proba`, a scikit-learn classifier wrapped by
:func:`sklearn_predict_proba`), with a declared cost per input (FLOPs or milliseconds).
A stage whose cost varies with the input (a SkipNet) reports what each input cost: give
the :class:`Stage` a ``cost_fn``, or give it a :class:`CostReporter` (an object with
``predict_proba`` and ``last_cost``, like
:class:`~vj_dynamic.skipnet_runtime.SkipNetClassifier`); the cascade's statistics then
use the reported costs.

The deferral rules live in :mod:`vj_dynamic.idk_rules` and are re-exported here.

References
----------
X. Wang, Y. Luo, D. Crankshaw, A. Tumanov, F. Yu, J. E. Gonzalez. "IDK Cascades: Fast
Deep Learning by Learning not to Overthink". UAI 2018.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from vj_dynamic.idk_rules import EntropyRule, IDKRule, LearnedDeferralRule, MaxProbRule

__all__ = [
    "CascadeResult",
    "CascadeStats",
    "CostReporter",
    "EntropyRule",
    "IDKCascade",
    "IDKRule",
    "LearnedDeferralRule",
    "MaxProbRule",
    "Stage",
    "StageStats",
    "sklearn_predict_proba",
    "torch_predict_proba",
]


@runtime_checkable
class CostReporter(Protocol):
    """A classifier that knows what each input of its most recent call cost.

    ``predict_proba(x)`` returns class probabilities ``(n, n_classes)``; afterwards
    ``last_cost`` holds the cost of each of those ``n`` inputs, ``(n,)``, in the
    cascade's unit (or ``None`` when it cannot tell). A :class:`Stage` built on such an
    object charges the reported costs instead of its declared one.
    """

    last_cost: np.ndarray | None

    def predict_proba(self, x: Any) -> Any:
        """Class probabilities ``(n, n_classes)`` for a batch of ``n`` inputs."""
        ...


def _reporter_of(predict_proba: Any) -> CostReporter | None:
    """The :class:`CostReporter` behind ``predict_proba``: itself, or its bound method's owner."""
    if isinstance(predict_proba, CostReporter):
        return predict_proba
    owner = getattr(predict_proba, "__self__", None)
    if isinstance(owner, CostReporter) and predict_proba == owner.predict_proba:
        return owner
    return None


@dataclass(frozen=True)
class Stage:
    """One classifier of a cascade.

    Attributes
    ----------
    name : str
        Label used in statistics.
    predict_proba : callable or CostReporter
        Maps a batch of inputs to class probabilities ``(n, n_classes)`` (NumPy or
        torch). A :class:`CostReporter` (or its bound ``predict_proba`` method) is called
        through its ``predict_proba``, and its ``last_cost`` becomes the ``cost_fn``.
    cost : float
        Declared cost per input (FLOPs or ms; one unit for the whole cascade).
    rule : IDKRule or None
        When to defer. Required for every stage but the last (and for the last one too
        when the cascade may abstain).
    cost_fn : callable or None
        Called without arguments right after each ``predict_proba`` call; returns the
        cost of each input of that call, ``(n,)``, or ``None`` to charge ``cost`` per
        input. ``None`` (the default): always charge ``cost``.
    """

    name: str
    predict_proba: Callable[[Any], Any]
    cost: float
    rule: IDKRule | None = None
    cost_fn: Callable[[], Any] | None = None

    def __post_init__(self) -> None:
        reporter = _reporter_of(self.predict_proba)
        if reporter is not None:
            object.__setattr__(self, "predict_proba", reporter.predict_proba)
            if self.cost_fn is None:
                object.__setattr__(self, "cost_fn", lambda: reporter.last_cost)
        if not callable(self.predict_proba):
            raise ValueError(f"stage {self.name!r}: predict_proba must be callable")
        if self.cost_fn is not None and not callable(self.cost_fn):
            raise ValueError(f"stage {self.name!r}: cost_fn must be callable or None")
        if not np.isfinite(self.cost) or self.cost < 0:
            raise ValueError(f"stage {self.name!r}: cost must be finite and >= 0, got {self.cost}")

    def costs(self, n: int) -> np.ndarray:
        """Cost of each of the ``n`` inputs of the most recent call, ``(n,)`` float64.

        The ``cost_fn``'s report when it gives one value per input; the declared cost
        otherwise.
        """
        reported = None if self.cost_fn is None else self.cost_fn()
        if reported is not None:
            reported = np.asarray(reported, dtype=np.float64)
            if reported.shape == (n,):
                return reported
        return np.full(n, self.cost)


@dataclass(frozen=True)
class StageStats:
    """What one stage did during a cascade call.

    Attributes
    ----------
    name : str
    inputs : int
        Inputs that reached the stage (it ran on all of them).
    answered : int
        Inputs it answered.
    cost : float
        Total cost of running it (reported per input when the stage reports it).
    ms : float
        Wall-clock time of its call, including the gather of its inputs.
    """

    name: str
    inputs: int
    answered: int
    cost: float
    ms: float

    @property
    def idk_rate(self) -> float:
        """Fraction of the inputs reaching the stage that it deferred (0 when none reached it)."""
        return 1.0 - self.answered / self.inputs if self.inputs else 0.0


@dataclass(frozen=True)
class CascadeStats:
    """Per-stage statistics of one cascade call over ``n_inputs`` inputs."""

    stages: tuple[StageStats, ...]
    n_inputs: int

    @property
    def total_cost(self) -> float:
        """Cost summed over stages and inputs."""
        return float(sum(s.cost for s in self.stages))

    @property
    def cost_per_input(self) -> float:
        """Mean cost per input."""
        return self.total_cost / self.n_inputs if self.n_inputs else 0.0

    @property
    def total_ms(self) -> float:
        """Wall-clock time summed over stages."""
        return float(sum(s.ms for s in self.stages))

    def table(self) -> str:
        """A readable per-stage table."""
        lines = [
            f"{'stage':<16}{'inputs':>8}{'answered':>10}{'IDK rate':>10}{'cost':>14}{'ms':>10}"
        ]
        for s in self.stages:
            lines.append(
                f"{s.name:<16}{s.inputs:>8}{s.answered:>10}{s.idk_rate:>10.3f}"
                f"{s.cost:>14.4g}{s.ms:>10.2f}"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class CascadeResult:
    """Output of :meth:`IDKCascade.predict`.

    Attributes
    ----------
    predictions : (N,) ndarray of int
        Predicted class, ``-1`` where the cascade abstained.
    probabilities : (N, n_classes) ndarray
        Probabilities from the stage that decided.
    decided_by : (N,) ndarray of int
        Index of the stage that decided (the last stage for abstentions).
    costs : (N,) ndarray
        Cost spent on each input, summed over the stages it went through.
    stats : CascadeStats
    """

    predictions: np.ndarray
    probabilities: np.ndarray
    decided_by: np.ndarray
    costs: np.ndarray
    stats: CascadeStats

    def accuracy(self, labels: np.ndarray | torch.Tensor) -> float:
        """Fraction of all inputs answered correctly (abstentions count as wrong)."""
        labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        if labels.shape != self.predictions.shape:
            raise ValueError(f"labels must have shape {self.predictions.shape}, got {labels.shape}")
        return float((self.predictions == labels).mean())


def _take(x: Any, index: np.ndarray) -> Any:
    if isinstance(x, torch.Tensor):
        return x.index_select(0, torch.from_numpy(index).to(x.device))
    if isinstance(x, np.ndarray):
        return x[index]
    return [x[i] for i in index]


def _to_numpy(probs: Any) -> np.ndarray:
    if isinstance(probs, torch.Tensor):
        probs = probs.detach().cpu().numpy()
    return np.asarray(probs, dtype=np.float64)


class IDKCascade:
    """A cascade of classifiers with "I don't know" rules, run on a batch at once.

    Parameters
    ----------
    stages : sequence of Stage
        Ordered from cheapest to most expensive.
    abstain : bool, optional
        Let the last stage defer too (its inputs get prediction ``-1``).
    cost_unit : str, optional
        Unit of the stage costs, for display (``"flops"`` or ``"ms"``).

    Examples
    --------
    >>> import numpy as np
    >>> cheap = Stage("cheap", lambda x: np.tile([0.6, 0.4], (len(x), 1)), 1.0, MaxProbRule(0.9))
    >>> big = Stage("big", lambda x: np.tile([0.1, 0.9], (len(x), 1)), 10.0)
    >>> result = IDKCascade([cheap, big]).predict(np.zeros((3, 4)))
    >>> result.predictions.tolist(), result.decided_by.tolist(), result.stats.cost_per_input
    ([1, 1, 1], [1, 1, 1], 11.0)
    """

    def __init__(self, stages: Sequence[Stage], *, abstain: bool = False, cost_unit: str = "flops"):
        stages = tuple(stages)
        if not stages:
            raise ValueError("a cascade needs at least one stage")
        for k, stage in enumerate(stages):
            if not isinstance(stage, Stage):
                raise ValueError(f"stage {k} is a {type(stage).__name__}, not a Stage")
            needs_rule = k < len(stages) - 1 or abstain
            if needs_rule and stage.rule is None:
                raise ValueError(f"stage {k} ({stage.name!r}) needs an IDK rule")
        self.stages = stages
        self.abstain = abstain
        self.cost_unit = cost_unit

    def with_thresholds(self, thresholds: Sequence[float]) -> IDKCascade:
        """A copy whose deferring stages use these confidence thresholds, in order."""
        deferring = [k for k, s in enumerate(self.stages) if s.rule is not None]
        if not self.abstain:
            deferring = [k for k in deferring if k < len(self.stages) - 1]
        if len(thresholds) != len(deferring):
            raise ValueError(f"need {len(deferring)} thresholds, got {len(thresholds)}")
        stages = list(self.stages)
        for k, t in zip(deferring, thresholds, strict=True):
            stages[k] = replace(stages[k], rule=stages[k].rule.with_threshold(t))
        return IDKCascade(stages, abstain=self.abstain, cost_unit=self.cost_unit)

    def predict(self, x: Any) -> CascadeResult:
        """Run the cascade on a batch.

        Parameters
        ----------
        x : Tensor, ndarray or sequence
            Inputs, first axis the sample; each stage receives the rows it must decide.

        Returns
        -------
        CascadeResult
        """
        n = len(x)
        if n == 0:
            raise ValueError("empty input batch")
        predictions = np.full(n, -1, dtype=np.int64)
        decided_by = np.full(n, -1, dtype=np.int64)
        costs = np.zeros(n, dtype=np.float64)
        probabilities: np.ndarray | None = None
        remaining = np.arange(n)
        stats = []
        last = len(self.stages) - 1
        for k, stage in enumerate(self.stages):
            if remaining.size == 0:
                stats.append(StageStats(stage.name, 0, 0, 0.0, 0.0))
                continue
            start = time.perf_counter()
            # Every input reaches the first stage: hand it the batch itself, not a copy.
            rows = x if remaining.size == n else _take(x, remaining)
            probs = _to_numpy(stage.predict_proba(rows))
            ms = (time.perf_counter() - start) * 1e3
            if probs.ndim != 2 or probs.shape[0] != remaining.size:
                raise ValueError(
                    f"stage {stage.name!r} returned shape {probs.shape} for {remaining.size} inputs"
                )
            if probabilities is None:
                probabilities = np.zeros((n, probs.shape[1]))
            elif probs.shape[1] != probabilities.shape[1]:
                raise ValueError(f"stage {stage.name!r} returned {probs.shape[1]} classes")
            stage_cost = stage.costs(remaining.size)
            costs[remaining] += stage_cost
            if k == last and not self.abstain:
                answer = np.ones(remaining.size, dtype=bool)
            else:
                answer = ~stage.rule.idk(probs)
            done = remaining[answer]
            probabilities[done] = probs[answer]
            predictions[done] = probs[answer].argmax(axis=1)
            decided_by[done] = k
            if k == last:  # abstentions: keep the last stage's probabilities for inspection
                probabilities[remaining[~answer]] = probs[~answer]
                decided_by[remaining[~answer]] = k
            stats.append(
                StageStats(
                    stage.name, int(remaining.size), int(answer.sum()), float(stage_cost.sum()), ms
                )
            )
            remaining = remaining[~answer]
        return CascadeResult(
            predictions, probabilities, decided_by, costs, CascadeStats(tuple(stats), n)
        )


def torch_predict_proba(
    module: torch.nn.Module, *, batch_size: int = 256, logits: bool = True
) -> Callable[[torch.Tensor], np.ndarray]:
    """Wrap a PyTorch classifier as a stage callable (eval mode, no autograd).

    Parameters
    ----------
    module : torch.nn.Module
        Maps ``(n, ...)`` tensors to ``(n, n_classes)`` scores.
    batch_size : int, optional
        Largest chunk passed to the module at once.
    logits : bool, optional
        Apply a softmax to the outputs (``False`` if the module returns probabilities).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    def predict_proba(x: torch.Tensor) -> np.ndarray:
        module.eval()
        with torch.inference_mode():
            outs = [module(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
            out = torch.cat(outs)
            if logits:
                out = torch.softmax(out, dim=1)
        return out.cpu().numpy()

    return predict_proba


def sklearn_predict_proba(
    estimator: Any, transform: Callable[[Any], np.ndarray] | None = None
) -> Callable[[Any], np.ndarray]:
    """Wrap a fitted scikit-learn classifier as a stage callable.

    Parameters
    ----------
    estimator : classifier with ``predict_proba``
        Its classes must be ``0 .. n_classes - 1`` so that columns are class labels.
    transform : callable, optional
        Maps the cascade's inputs to the estimator's feature matrix.
    """
    if not hasattr(estimator, "predict_proba"):
        raise ValueError(f"{type(estimator).__name__} has no predict_proba")
    classes = getattr(estimator, "classes_", None)
    if classes is not None and not np.array_equal(classes, np.arange(len(classes))):
        raise ValueError(f"estimator classes must be 0..n-1 to align columns, got {classes}")

    def predict_proba(x: Any) -> np.ndarray:
        features = transform(x) if transform is not None else x
        return estimator.predict_proba(features)

    return predict_proba
