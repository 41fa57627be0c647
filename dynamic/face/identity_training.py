"""Training the shipped face-identity model: backbone, then TAFE-Net head, then threshold.

1. The backbone (:func:`~vj_dynamic.face.embedding.train_embedder`) learns from the
   shared data's unlabelled Caltech face crops (:func:`caltech_face_crops`), cut with
   the cascade's box as the webcam cuts faces. Resumable: a checkpoint per epoch.
2. The TAFE-Net head (:func:`~vj_dynamic.tafe_training.train_tafe`) is meta-trained on
   the ORL people but ``n_val`` (:data:`VALIDATION_PEOPLE`), on the backbone's features of
   their crops and of distorted copies.
3. The threshold on the head's logit is the one that is most accurate on episodes of
   the held-out validation people, K = 1..5 mixed (:func:`choose_threshold`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from vj_dynamic.face.embedding import EmbedderTrainConfig, FaceEmbedder, train_embedder
from vj_dynamic.face.enrolment import MAX_CROPS, face_crops
from vj_dynamic.face.few_shot import best_threshold, sample_episodes, tafe_scores
from vj_dynamic.face.identity import FaceIdentityModel, IdentitySet, orl_identities
from vj_dynamic.face.sources import CALTECH_FACE_BOX
from vj_dynamic.latency import torch_threads
from vj_dynamic.tafe import TafeNet
from vj_dynamic.tafe_training import TafeTrainConfig, train_tafe

from vj.image_sources import image_files, read_gray, resolve_data_dir

__all__ = ["FEATURE_VIEWS", "VALIDATION_PEOPLE", "caltech_face_crops", "choose_threshold",
           "train_head", "train_identity_model"]

#: Distorted copies of each training crop whose features the head also trains on.
FEATURE_VIEWS = 6
#: ORL people held out of the shipped head's training to choose its threshold.
VALIDATION_PEOPLE = 5


def caltech_face_crops(data: str | Path | None = None) -> np.ndarray:
    """The Caltech face crops of the shared data, recut as :func:`face_crops` cuts faces."""
    files = image_files(resolve_data_dir(data) / "faces" / "caltech36")
    if not files:
        raise ValueError("no Caltech face crops in the shared data (faces/caltech36)")
    box = np.rint([CALTECH_FACE_BOX]).astype(np.int64)
    return np.stack([face_crops(read_gray(p), box)[0] for p in files])


def train_head(embedder: FaceEmbedder, identities: IdentitySet, people: np.ndarray,
               config: TafeTrainConfig | None = None, *, progress: bool = False) -> TafeNet:
    """Meta-train a TAFE-Net head on the crops of ``people`` (backbone fixed)."""
    rows = identities.of(people)
    views = embedder.embed_views(identities.crops[rows], FEATURE_VIEWS, seed=1)
    config = config or TafeTrainConfig()
    torch.manual_seed(config.seed)  # the head's initial weights, so that runs repeat
    head = TafeNet(features=embedder.dim)
    with torch_threads(1):  # a small network: one thread is the fastest
        train_tafe(head, views, identities.person[rows], config, progress=progress)
    return head


def choose_threshold(head: TafeNet, features: np.ndarray, person: np.ndarray,
                     people: np.ndarray, seed: int = 0, per_person: int = 10) -> float:
    """The most accurate logit threshold on episodes of ``people``, K = 1..MAX_CROPS."""
    rng = np.random.default_rng(seed)
    episodes = [e for k in range(1, MAX_CROPS + 1)
                for e in sample_episodes(person, people, k, per_person, rng)]
    scores = tafe_scores(head, features, episodes)
    return best_threshold(scores, np.concatenate([e.labels for e in episodes]))


def train_identity_model(
    data: str | Path | None = None,
    workdir: str | Path | None = None,
    *,
    embedder_config: EmbedderTrainConfig | None = None,
    head_config: TafeTrainConfig | None = None,
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[FaceIdentityModel, dict]:
    """Train backbone, head and threshold; returns the model and a summary for its card.

    Parameters
    ----------
    data : path, optional
        The shared data folder.
    workdir : path, optional
        Where the backbone's checkpoint goes (training resumes from it).
    embedder_config, head_config : optional
        Training settings of the two parts.
    seed : int, optional
        Seed of the choice of validation people.
    """
    checkpoint = Path(workdir) / "embedder_checkpoint.pt" if workdir is not None else None
    crops = caltech_face_crops(data)
    log(f"backbone: {len(crops)} unlabelled Caltech face crops")
    embedder = train_embedder(crops, embedder_config, checkpoint=checkpoint, progress=progress,
                              log=log)
    identities = orl_identities(data)
    order = np.random.default_rng(seed).permutation(len(identities.names))
    val, train = np.sort(order[:VALIDATION_PEOPLE]), np.sort(order[VALIDATION_PEOPLE:])
    log(f"head: meta-training on {len(train)} ORL people")
    head = train_head(embedder, identities, train, head_config, progress=progress)
    features = embedder.embed(identities.crops).numpy()
    threshold = choose_threshold(head, features, identities.person, val, seed=seed)
    log(f"threshold {threshold:.3f} (validation people "
        f"{', '.join(identities.names[i] for i in val)})")
    summary = {"backbone_crops": len(crops), "head_people": [identities.names[i] for i in train],
               "validation_people": [identities.names[i] for i in val],
               "threshold": threshold}
    return FaceIdentityModel(embedder, head, threshold).eval(), summary
