"""Few-shot face verification on people never seen in training: TAFE-Net and two baselines.

The protocol (what ``vj-bench tafe`` runs):

- the people are split into folds (:func:`person_folds`); in each fold, ``n_test``
  people are the unseen test people, ``n_val`` more are validation people (every
  method's decision threshold is chosen on them) and the rest meta-train the TAFE-Net
  head (the backbone never saw any of them: it learnt from unlabelled faces);
- an *episode* (:func:`sample_episodes`) enrols a person from K of their crops and asks
  "is this the person?" of ``n_pos`` other crops of theirs and ``n_neg`` crops of other
  people of the same part;
- every method scores the same episodes on the same backbone features:
  TAFE-Net (:func:`tafe_scores`), the nearest enrolled crop by cosine
  (:func:`nearest_neighbour_scores`) and a logistic regression fitted on the K crops
  against the training people's crops (:func:`logistic_regression_scores`);
- ROC AUC over all episodes' scores pooled (a single threshold must serve every
  person, as in the webcam), and accuracy at the threshold chosen on the validation
  people (:func:`best_threshold`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from vj_dynamic.tafe import TafeNet

__all__ = [
    "Episode",
    "best_threshold",
    "logistic_regression_scores",
    "nearest_neighbour_scores",
    "person_folds",
    "sample_episodes",
    "tafe_scores",
    "verification_metrics",
]


@dataclass(frozen=True)
class Episode:
    """One enrolment and its questions: indices into the feature rows, and the answers."""

    support: np.ndarray
    query: np.ndarray
    labels: np.ndarray


def person_folds(n_people: int, n_folds: int = 4, n_val: int = 5,
                 seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(train, val, test)`` person indices per fold; every person is tested once.

    The people are shuffled once; fold ``f`` tests the ``f``-th block, validates on the
    ``n_val`` people after the test block (wrapping round) and trains on the rest.
    """
    n_test = n_people // n_folds
    if n_folds < 2 or n_test < 2 or n_people - n_test - n_val < 2 or n_val < 2:
        raise ValueError(f"{n_people} people do not make {n_folds} folds with {n_val} "
                         "validation people and two or more people in every part")
    order = np.random.default_rng(seed).permutation(n_people)
    folds = []
    for f in range(n_folds):
        rolled = np.roll(order, -f * n_test)
        folds.append((np.sort(rolled[n_test + n_val:]), np.sort(rolled[n_test:n_test + n_val]),
                      np.sort(rolled[:n_test])))
    return folds


def sample_episodes(person: np.ndarray, people: np.ndarray, k: int, per_person: int,
                    rng: np.random.Generator, n_pos: int = 5,
                    n_neg: int = 5) -> list[Episode]:
    """``per_person`` episodes of enrolment size ``k`` for each of ``people``.

    Parameters
    ----------
    person : (N,) int ndarray
        The person of every feature row.
    people : (P,) int ndarray
        The people to enrol; negatives are drawn from the others among them.
    k, per_person, n_pos, n_neg : int
        Enrolment crops, episodes per person, positive and negative questions.
    rng : numpy Generator
    """
    rows = {p: np.flatnonzero(person == p) for p in people}
    if any(len(r) < k + 1 for r in rows.values()) or len(people) < 2:
        raise ValueError(f"every person needs more than k={k} crops, and two people or more")
    episodes = []
    for p in people:
        others = np.flatnonzero(np.isin(person, people) & (person != p))
        for _ in range(per_person):
            order = rng.permutation(rows[p])
            pos = order[k:k + n_pos]
            neg = rng.choice(others, n_neg, replace=False)
            episodes.append(Episode(order[:k], np.r_[pos, neg],
                                    np.r_[np.ones(len(pos)), np.zeros(n_neg)]))
    return episodes


def tafe_scores(head: TafeNet, features: np.ndarray, episodes: list[Episode]) -> np.ndarray:
    """TAFE-Net logits of every episode's questions, concatenated."""
    head.eval()
    out = []
    with torch.no_grad():
        for e in episodes:
            weights = head.task(torch.from_numpy(features[e.support][None]))
            logits, _ = head(torch.from_numpy(features[e.query][None]), weights)
            out.append(logits[0].numpy())
    return np.concatenate(out)


def nearest_neighbour_scores(features: np.ndarray, episodes: list[Episode]) -> np.ndarray:
    """Cosine of each question with its nearest enrolment crop (features are unit)."""
    return np.concatenate([(features[e.query] @ features[e.support].T).max(1) for e in episodes])


def logistic_regression_scores(features: np.ndarray, episodes: list[Episode],
                               background: np.ndarray) -> np.ndarray:
    """A logistic regression per episode: its K crops against ``background`` crops.

    Classes are weighted to balance (K positives against hundreds of negatives); the
    score is the decision function.
    """
    out = []
    for e in episodes:
        x = np.concatenate([features[e.support], background])
        y = np.r_[np.ones(len(e.support)), np.zeros(len(background))]
        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=300).fit(x, y)
        out.append(model.decision_function(features[e.query]))
    return np.concatenate(out)


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold that maximises accuracy (midway between neighbouring scores)."""
    order = np.argsort(scores)
    s, y = scores[order], labels[order]
    # Accepting everything above position i: right = negatives below + positives above.
    right = np.r_[0, np.cumsum(1 - y)] + np.r_[np.cumsum(y[::-1])[::-1], 0]
    best = int(np.argmax(right))
    if best == 0:
        return float(s[0] - 1.0)
    if best == len(s):
        return float(s[-1] + 1.0)
    return float((s[best - 1] + s[best]) / 2)


def verification_metrics(scores: np.ndarray, labels: np.ndarray,
                         threshold: float) -> dict[str, float]:
    """ROC AUC of the pooled scores and the accuracy of ``scores > threshold``."""
    return {"auc": float(roc_auc_score(labels, scores)),
            "accuracy": float(np.mean((scores > threshold) == (labels > 0)))}
