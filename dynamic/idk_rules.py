"""The "I don't know" rules of IDK cascade stages: when a stage defers to the next.

Every rule maps a stage's class probabilities to a confidence (higher means surer) and
defers below its threshold, so that threshold tuning
(:mod:`vj_dynamic.idk_tuning`) works on the same scale for every rule.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from sklearn.linear_model import LogisticRegression

__all__ = ["EntropyRule", "IDKRule", "LearnedDeferralRule", "MaxProbRule", "check_probs"]


def check_probs(probs: np.ndarray) -> np.ndarray:
    """``probs`` as a float64 ``(N, n_classes >= 2)`` array; ValueError otherwise."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probabilities must have shape (N, n_classes >= 2), got {probs.shape}")
    return probs


class IDKRule:
    """Base of the "I don't know" rules: defer when the confidence is below ``threshold``.

    Subclasses define :meth:`confidence` (higher means surer); threshold tuning works on
    that scale for every rule alike.
    """

    threshold: float

    def confidence(self, probs: np.ndarray) -> np.ndarray:
        """Confidence ``(N,)`` of a stage's probabilities ``(N, n_classes)``."""
        raise NotImplementedError

    def idk(self, probs: np.ndarray) -> np.ndarray:
        """Boolean ``(N,)``: true where the stage defers."""
        return self.confidence(probs) < self.threshold

    def with_threshold(self, threshold: float) -> IDKRule:
        """A copy of the rule with ``threshold`` on the confidence scale."""
        return replace(self, threshold=float(threshold))


@dataclass(frozen=True)
class MaxProbRule(IDKRule):
    """Defer when the largest class probability is below ``threshold``."""

    threshold: float = 0.9

    def confidence(self, probs: np.ndarray) -> np.ndarray:
        """The maximum probability of each row."""
        return check_probs(probs).max(axis=1)


@dataclass(frozen=True)
class EntropyRule(IDKRule):
    """Defer when the predictive entropy (nats) exceeds ``-threshold``.

    The confidence is the negative entropy, so that higher means surer like every
    rule; build it from a maximum entropy with :meth:`from_max_entropy`.
    """

    threshold: float = -0.5

    @classmethod
    def from_max_entropy(cls, max_entropy: float) -> EntropyRule:
        """The rule that defers when the entropy exceeds ``max_entropy``."""
        if max_entropy < 0:
            raise ValueError(f"max_entropy must be >= 0, got {max_entropy}")
        return cls(threshold=-float(max_entropy))

    def confidence(self, probs: np.ndarray) -> np.ndarray:
        """Negative Shannon entropy of each row."""
        probs = check_probs(probs)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(probs > 0, probs * np.log(probs), 0.0)
        return terms.sum(axis=1)


def _deferral_features(probs: np.ndarray) -> np.ndarray:
    probs = check_probs(probs)
    top = np.sort(probs, axis=1)[:, ::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(probs > 0, probs * np.log(probs), 0.0).sum(axis=1)
    return np.column_stack([top[:, 0], top[:, 0] - top[:, 1], entropy])


@dataclass(frozen=True)
class LearnedDeferralRule(IDKRule):
    """A small learned deferral model: logistic regression predicting whether the stage is right.

    Features of each probability vector: maximum, margin between the top two, entropy.
    The confidence is the predicted probability that the stage's answer is correct.

    Parameters
    ----------
    threshold : float
        Defer when ``P(correct) < threshold``.
    model : LogisticRegression or None
        Fitted model; build with :meth:`fit`.
    """

    threshold: float = 0.5
    model: LogisticRegression | None = None

    @classmethod
    def fit(
        cls, probs: np.ndarray, correct: np.ndarray, threshold: float = 0.5
    ) -> LearnedDeferralRule:
        """Fit on a stage's validation probabilities and whether its answers were right."""
        features = _deferral_features(probs)
        correct = np.asarray(correct, dtype=bool)
        if correct.shape != (features.shape[0],):
            raise ValueError(f"correct must have shape ({features.shape[0]},), got {correct.shape}")
        if correct.all() or not correct.any():
            raise ValueError("need both right and wrong answers to learn when to defer")
        model = LogisticRegression(C=1.0, max_iter=1000).fit(features, correct)
        return cls(threshold=threshold, model=model)

    def confidence(self, probs: np.ndarray) -> np.ndarray:
        """Predicted probability that each answer is correct."""
        if self.model is None:
            raise ValueError(
                "LearnedDeferralRule is not fitted; build it with LearnedDeferralRule.fit"
            )
        return self.model.predict_proba(_deferral_features(probs))[:, 1]
