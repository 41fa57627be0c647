"""Neural module networks: a network assembled per question from small modules.

Andreas, Rohrbach, Darrell & Klein, "Neural Module Networks", CVPR 2016. A question is
parsed into a layout (:mod:`vj_dynamic.nmn_layout`); each module of the layout is a
small network, and the modules are wired as the layout says. The modules here work
on a grid of cell features (3 x 3 for SHAPES) and pass attention maps between them:

- ``find[w]`` (features -> attention): cells whose features match word ``w``;
- ``relate[w]`` (attention -> attention): the paper's *transform*, a 3 x 3 convolution
  of the attention with a kernel chosen by ``w`` ("above" moves attention up a cell);
- ``and`` (attention, attention -> attention): the element-wise minimum;
- ``exists`` (attention -> answer) and ``describe[w]`` (features, attention ->
  answer): a yes/no logit.

A module's word-specific weights are rows of a table indexed by the word, so questions
whose layouts share a *structure* (:func:`~vj_dynamic.nmn_layout.layout_structure`) run
as one batch whatever their words: :meth:`NeuralModuleNetwork.forward` groups the
questions by structure and runs each group as one batch, the image encoder once for
all. :meth:`NeuralModuleNetwork.forward_one_by_one` runs question after question, the
reference the batched execution must equal and the peer it is timed against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from vj_dynamic.flops import conv2d_flops, linear_flops
from vj_dynamic.nmn_layout import SHAPES_LEXICON, Layout, group_layouts, layout_structure

__all__ = ["CellEncoder", "NeuralModuleNetwork", "image_tensor"]


# Mean and spread of a SHAPES pixel (mostly dark background): inputs of unit scale let
# the first convolutions tell cells apart from the first step.
_PIXEL_MEAN, _PIXEL_STD = 38.0, 70.0


def image_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(N, 3, S, S)`` uint8 images -> standardised float32 (tensors pass through)."""
    if isinstance(images, torch.Tensor):
        return images
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (N, 3, H, W) uint8, got {images.dtype} {images.shape}")
    return torch.from_numpy((images.astype(np.float32) - _PIXEL_MEAN) / _PIXEL_STD)


class CellEncoder(nn.Module):
    """A CNN that turns a ``30 x 30`` image into a ``3 x 3`` grid of cell features.

    Two strided convolutions whose receptive fields tile the grid's cells (5 x 5
    patches, then 2 x 2 of them), each followed by batch normalisation, then a 1 x 1
    convolution: each output cell sees exactly its own ``10 x 10`` cell of the image.
    (In evaluation mode batch normalisation is a fixed affine map, so a question's
    answer does not depend on the batch it runs in.)

    Parameters
    ----------
    channels : int, optional
        Output channels (the features every module reads).
    """

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.channels = int(channels)
        self.conv1 = nn.Conv2d(3, 16, 5, stride=5, bias=False)
        self.norm1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, channels, 2, stride=2, bias=False)
        self.norm2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 30, 30)`` -> ``(N, channels, 3, 3)``."""
        x = F.relu(self.norm1(self.conv1(x)))
        x = F.relu(self.norm2(self.conv2(x)))
        return F.relu(self.conv3(x))

    def flops(self) -> int:
        """FLOPs per image (see :mod:`vj_dynamic.flops`)."""
        c = self.channels
        return (conv2d_flops(3, 16, 5, 6, 6) + conv2d_flops(16, c, 2, 3, 3)
                + conv2d_flops(c, c, 1, 3, 3))


class NeuralModuleNetwork(nn.Module):
    """The modules find, relate, and, exists and describe over a :class:`CellEncoder`.

    Parameters
    ----------
    words : sequence of str, optional
        The module words (default: the SHAPES lexicon's); layouts may use only these.
    channels : int, optional
        Cell feature channels.
    hidden : int, optional
        Width of the modules' hidden layers.

    Examples
    --------
    >>> from vj_dynamic.nmn_layout import parse_question
    >>> net = NeuralModuleNetwork()
    >>> images = torch.zeros(2, 3, 30, 30)
    >>> layouts = [parse_question("is there a red circle"), parse_question("is the square blue")]
    >>> net(images, layouts).shape
    torch.Size([2])
    """

    def __init__(self, words: Sequence[str] | None = None, channels: int = 32,
                 hidden: int = 48) -> None:
        super().__init__()
        self.words = tuple(words) if words is not None else SHAPES_LEXICON.module_words
        if len(set(self.words)) != len(self.words) or not self.words:
            raise ValueError(f"module words must be distinct and non-empty, got {self.words}")
        n, self.hidden = len(self.words), int(hidden)
        self.encoder = CellEncoder(channels)
        self.find_map = nn.Conv2d(channels, hidden, 1)
        self.find_word = nn.Embedding(n, hidden)
        self.find_bias = nn.Parameter(torch.zeros(1))
        self.relate_kernel = nn.Embedding(n, 9)
        self.relate_bias = nn.Embedding(n, 1)
        self.exists_hidden = nn.Linear(9, hidden)
        self.exists_out = nn.Linear(hidden, 1)
        self.describe_map = nn.Linear(channels, hidden)
        self.describe_word = nn.Embedding(n, hidden)
        self.describe_out = nn.Linear(hidden, 1)
        nn.init.normal_(self.relate_kernel.weight, std=0.3)

    # --- the modules -------------------------------------------------------------------
    def find(self, features: torch.Tensor, word: torch.Tensor) -> torch.Tensor:
        """Attention ``(N, 3, 3)`` in (0, 1) over the cells that ``word`` describes."""
        keys = F.relu(self.find_map(features))                      # (N, H, 3, 3)
        query = self.find_word(word)[:, :, None, None]              # (N, H, 1, 1)
        return torch.sigmoid((keys * query).sum(1) / math.sqrt(self.hidden) + self.find_bias)

    def relate(self, attention: torch.Tensor, word: torch.Tensor) -> torch.Tensor:
        """The attention moved as relation ``word`` says (a word-chosen 3 x 3 kernel)."""
        n, h, w = attention.shape
        patches = F.unfold(attention[:, None], 3, padding=1)         # (N, 9, h*w)
        kernel = self.relate_kernel(word)                           # (N, 9)
        moved = torch.einsum("nk,nkp->np", kernel, patches) * 4.0 + self.relate_bias(word)
        return torch.sigmoid(moved).view(n, h, w)

    @staticmethod
    def conjoin(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """``and``: cells both attentions select (element-wise minimum)."""
        return torch.minimum(left, right)

    def exists(self, attention: torch.Tensor) -> torch.Tensor:
        """Yes/no logit ``(N,)``: is any cell attended?"""
        return self.exists_out(F.relu(self.exists_hidden(attention.flatten(1)))).squeeze(1)

    def describe(self, features: torch.Tensor, attention: torch.Tensor,
                 word: torch.Tensor) -> torch.Tensor:
        """Yes/no logit ``(N,)``: does ``word`` describe the attended cells?"""
        weights = attention.flatten(1)
        weights = weights / (weights.sum(1, keepdim=True) + 1e-3)
        pooled = torch.einsum("np,ncp->nc", weights, features.flatten(2))
        hidden = F.relu(self.describe_map(pooled) * self.describe_word(word))
        return self.describe_out(hidden).squeeze(1)

    # --- execution ---------------------------------------------------------------------
    def _run(self, node: Layout, features: torch.Tensor, words: torch.Tensor,
             slot: int) -> tuple[torch.Tensor, int]:
        """Execute a structure (words blank) with word ids ``words[:, slot:]``."""
        kind = node[0]
        if kind == "find":
            return self.find(features, words[:, slot]), slot + 1
        if kind == "relate":
            attention, end = self._run(node[2], features, words, slot + 1)
            return self.relate(attention, words[:, slot]), end
        if kind == "and":
            left, middle = self._run(node[1], features, words, slot)
            right, end = self._run(node[2], features, words, middle)
            return self.conjoin(left, right), end
        if kind == "exists":
            attention, end = self._run(node[1], features, words, slot)
            return self.exists(attention), end
        if kind == "describe":
            attention, end = self._run(node[2], features, words, slot + 1)
            return self.describe(features, attention, words[:, slot]), end
        raise ValueError(f"unknown module {kind!r}")

    def run_group(self, structure: Layout, features: torch.Tensor,
                  word_ids: torch.Tensor) -> torch.Tensor:
        """Answer logits ``(n,)`` of ``n`` questions sharing ``structure``.

        Parameters
        ----------
        structure : Layout
            A layout with its words blanked (:func:`~vj_dynamic.nmn_layout.layout_structure`).
        features : (n, C, 3, 3) Tensor
            Each question's image features.
        word_ids : (n, n_slots) int64 Tensor
            Each question's module words, in pre-order.
        """
        logits, used = self._run(structure, features, word_ids, 0)
        if logits.ndim != 1:
            raise ValueError(f"layout {structure!r} does not end in an answer module "
                             "(exists or describe)")
        if used != word_ids.shape[1]:
            raise ValueError(f"structure {structure!r} takes {used} words, got "
                             f"{word_ids.shape[1]}")
        return logits

    def forward(self, images: torch.Tensor | np.ndarray, layouts: Sequence[Layout],
                image_index: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """Answer logits ``(Q,)``, executing questions of one structure as one batch.

        Parameters
        ----------
        images : (N, 3, 30, 30) Tensor or uint8 ndarray
            The images, encoded once each.
        layouts : sequence of Layout
            One per question.
        image_index : (Q,) int array, optional
            The image of each question (default: question ``i`` is about image ``i``).
        """
        features = self.encoder(image_tensor(images))
        if image_index is None:
            if features.shape[0] != len(layouts):
                raise ValueError(f"{len(layouts)} layouts for {features.shape[0]} images: "
                                 "pass image_index")
            index = torch.arange(len(layouts))
        else:
            index = torch.as_tensor(np.asarray(image_index), dtype=torch.long)
        out = features.new_empty(len(layouts))
        for structure, (members, word_ids) in group_layouts(layouts, self.words).items():
            rows = torch.from_numpy(members)
            out[rows] = self.run_group(structure, features[index[rows]],
                                       torch.from_numpy(word_ids))
        return out

    def forward_one_by_one(self, images: torch.Tensor | np.ndarray, layouts: Sequence[Layout],
                           image_index: torch.Tensor | np.ndarray | None = None
                           ) -> torch.Tensor:
        """The same logits as :meth:`forward`, one question (and its image) at a time."""
        images = image_tensor(images)
        index = np.arange(len(layouts)) if image_index is None else np.asarray(image_index)
        return torch.cat([
            self.forward(images[int(index[q])][None], [layout])
            for q, layout in enumerate(layouts)
        ]) if len(layouts) else images.new_empty(0)

    def layout_flops(self, layout: Layout) -> int:
        """FLOPs of one question with ``layout``, its image's encoding included."""
        structure, _ = layout_structure(layout)
        return self.encoder.flops() + self._structure_flops(structure)

    def _structure_flops(self, node: Layout) -> int:
        c, h, cells = self.encoder.channels, self.hidden, 9
        own = {
            "find": conv2d_flops(c, h, 1, 3, 3) + 2 * h * cells,
            "relate": 2 * 9 * cells,
            "and": 0,
            "exists": linear_flops(cells, h) + linear_flops(h, 1),
            "describe": 2 * c * cells + linear_flops(c, h) + linear_flops(h, 1),
        }[node[0]]
        return own + sum(self._structure_flops(child) for child in node[1:]
                         if isinstance(child, tuple))
