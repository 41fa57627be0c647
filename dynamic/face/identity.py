"""Who is this? The face-recognition model: a face embedding plus a TAFE-Net head.

:class:`FaceIdentityModel` bundles the backbone (:class:`~vj_dynamic.face.embedding.FaceEmbedder`,
trained without identity labels), the TAFE-Net head (:class:`~vj_dynamic.tafe.TafeNet`,
meta-trained on "is this person P?" tasks of ORL people) and the decision threshold on
the head's logit. A person enrolled with K crops is a task; the head's weights for it
are generated once (:meth:`FaceIdentityModel.tasks`) and every face is then scored
against every enrolled person (:meth:`FaceIdentityModel.scores`).

:func:`orl_identities` reads the shared ORL set as identity-labelled face crops, cut
from the box the project's cascade finds, as the webcam cuts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from vj_dynamic.face.embedding import FaceEmbedder
from vj_dynamic.face.enrolment import FACE_CROP_SIZE, face_crops
from vj_dynamic.tafe import TafeNet, TaskWeights
from vj_dynamic.weights import load_weights

from vj.image_sources import image_files, read_gray, resolve_data_dir
from vj.models import data_dir

__all__ = ["MODEL_FILE", "FaceIdentityModel", "IdentitySet", "load_identity_model",
           "orl_identities"]

#: The shipped model, in the models folder (``data/``).
MODEL_FILE = "tafe.pt"


class FaceIdentityModel(nn.Module):
    """Backbone, TAFE-Net head and threshold: scores "is this face person P?".

    Parameters
    ----------
    embedder : FaceEmbedder, optional
    head : TafeNet, optional
        Built with the default sizes when omitted (to load weights into).
    threshold : float, optional
        Logit above which a face is taken to be the person.
    """

    def __init__(self, embedder: FaceEmbedder | None = None, head: TafeNet | None = None,
                 threshold: float = 0.0) -> None:
        super().__init__()
        self.embedder = embedder or FaceEmbedder(size=FACE_CROP_SIZE)
        self.head = head or TafeNet(features=self.embedder.dim)
        self.register_buffer("threshold", torch.tensor(float(threshold)))

    def embed(self, crops: np.ndarray) -> torch.Tensor:
        """Unit backbone embeddings ``(N, d)`` of uint8 crops ``(N, 32, 32)``."""
        return self.embedder.embed(crops)

    def tasks(self, people: list[np.ndarray]) -> TaskWeights:
        """Generate the head's weights for each person's crops (``(K_i, 32, 32)`` each)."""
        if not people:
            raise ValueError("no people to generate tasks for")
        counts = torch.tensor([len(c) for c in people])
        features = self.embed(np.concatenate(people))
        support = torch.zeros(len(people), int(counts.max()), features.shape[1])
        for i, part in enumerate(torch.split(features, counts.tolist())):
            support[i, :len(part)] = part
        with torch.no_grad():
            return self.head.task(support, counts)

    def scores(self, features: torch.Tensor, tasks: TaskWeights) -> np.ndarray:
        """Logits ``(N, P)``: each of ``N`` faces (backbone features) against each person."""
        with torch.no_grad():
            query = features[None].expand(len(tasks), -1, -1)
            logits, _ = self.head(query, tasks)
        return logits.T.numpy()


def load_identity_model(path: str | Path | None = None) -> FaceIdentityModel:
    """The shipped face-identity model (``data/tafe.pt``), or the one at ``path``.

    Raises
    ------
    ValueError
        When the file is missing or holds other weights.
    """
    path = Path(path) if path is not None else data_dir() / MODEL_FILE
    model = FaceIdentityModel()
    try:
        load_weights(model, path)
    except RuntimeError as error:  # a state dict of another architecture
        raise ValueError(f"{path} does not hold face-identity weights: {error}") from None
    return model.eval()


@dataclass(frozen=True)
class IdentitySet:
    """Face crops labelled with who they show.

    Attributes
    ----------
    crops : (N, 32, 32) uint8 ndarray
    person : (N,) int64 ndarray
        Index into ``names``.
    names : list of str
        One per person (ORL: ``s1`` ... ``s40``).
    """

    crops: np.ndarray
    person: np.ndarray
    names: list[str]

    def of(self, people: np.ndarray) -> np.ndarray:
        """Boolean mask of the crops of ``people`` (indices into ``names``)."""
        return np.isin(self.person, people)


def orl_identities(data: str | Path | None = None, detector=None) -> IdentitySet:
    """The ORL faces (40 people x 10 images) as crops cut from the cascade's face box.

    Parameters
    ----------
    data : path, optional
        The shared data folder (``$VJ_DATA`` or ``../shared/data`` by default).
    detector : optional
        A ``vj`` detector (default: the shipped ``frontalface`` cascade); the largest
        box it finds is the face, or the median ORL box where it finds none
        (:func:`~vj_dynamic.face.scenes.orl_face_box`).
    """
    from vj_dynamic.face.scenes import orl_face_box

    import vj

    root = resolve_data_dir(data) / "orl"
    folders = sorted((d for d in root.iterdir() if d.is_dir()),
                     key=lambda d: (len(d.name), d.name)) if root.is_dir() else []
    if not folders:
        raise ValueError(f"no ORL person folders in {root}")
    detector = detector or vj.load("frontalface")
    crops, person = [], []
    for i, folder in enumerate(folders):
        for path in image_files(folder):
            image = read_gray(path)
            crops.append(face_crops(image, orl_face_box(image, [detector])[None])[0])
            person.append(i)
    return IdentitySet(np.stack(crops), np.asarray(person, np.int64), [d.name for d in folders])
