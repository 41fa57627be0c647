"""The monolithic peer of the neural module network: one CNN, one question encoder.

The baseline of Andreas et al. (CVPR 2016): the image through a CNN, the question
through a recurrent encoder, the two concatenated and read out by an MLP. The same
network answers every question, whatever its structure. :func:`budget_matched_baseline`
sizes it to a given parameter count, so that it is compared with a module network of
the same budget.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from vj_dynamic.bench.shapes import QUESTION_WORDS, encode_questions
from vj_dynamic.nmn import CellEncoder, image_tensor

__all__ = ["MonolithicVQA", "budget_matched_baseline", "parameter_count"]


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class MonolithicVQA(nn.Module):
    """CNN + GRU question encoder, concatenated, then an MLP: a yes/no logit per question.

    Parameters
    ----------
    channels : int, optional
        Cell features of the :class:`~vj_dynamic.nmn.CellEncoder` (as the module network's).
    reduced : int, optional
        Channels per cell after a 1 x 1 reduction, before flattening the 3 x 3 grid.
    embed, hidden : int, optional
        Word embedding size and GRU state size.
    mlp : int, optional
        Hidden units of the read-out.
    """

    def __init__(self, channels: int = 32, reduced: int = 8, embed: int = 16, hidden: int = 24,
                 mlp: int = 12) -> None:
        super().__init__()
        if min(channels, reduced, embed, hidden, mlp) < 1:
            raise ValueError("every width must be at least 1")
        self.encoder = CellEncoder(channels)
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.embed = nn.Embedding(len(QUESTION_WORDS), embed, padding_idx=0)
        self.gru = nn.GRU(embed, hidden, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(9 * reduced + hidden, mlp), nn.ReLU(), nn.Linear(mlp, 1))

    @staticmethod
    def prepare(questions: list[str]) -> np.ndarray:
        """Questions as padded word indices (what :meth:`forward` takes)."""
        return encode_questions(questions)

    def forward(self, images: torch.Tensor | np.ndarray, tokens: torch.Tensor | np.ndarray,
                image_index: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """Answer logits ``(Q,)`` for ``(Q, L)`` word indices about ``images``."""
        features = F.relu(self.reduce(self.encoder(image_tensor(images)))).flatten(1)
        if image_index is not None:
            features = features[torch.as_tensor(np.asarray(image_index), dtype=torch.long)]
        tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
        lengths = (tokens != 0).sum(1).clamp(min=1)
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(tokens), lengths.cpu(),
                                                   batch_first=True, enforce_sorted=False)
        _, state = self.gru(packed)
        return self.mlp(torch.cat([features, state[-1]], 1)).squeeze(1)


def budget_matched_baseline(target: int, **widths: int) -> MonolithicVQA:
    """The :class:`MonolithicVQA` whose read-out width brings it closest to ``target`` parameters.

    Parameters
    ----------
    target : int
        Parameter budget (e.g. the module network's count).
    **widths
        Other widths of :class:`MonolithicVQA`, fixed.
    """
    if target < 1:
        raise ValueError(f"target must be a positive parameter count, got {target}")
    # The count grows linearly with the read-out width: two sizes give the line.
    one = parameter_count(MonolithicVQA(**widths, mlp=1))
    per_unit = parameter_count(MonolithicVQA(**widths, mlp=2)) - one
    return MonolithicVQA(**widths, mlp=max(1, 1 + round((target - one) / per_unit)))
