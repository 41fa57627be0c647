"""Cheap classifiers for the early stages of an IDK cascade.

:class:`SmallCNN` is two strided convolutions and a linear layer: around a thousandth
of a ResNet-38's FLOPs at 32x32. :func:`pooled_pixels` turns images into the small
feature vectors a scikit-learn model can take.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from vj_dynamic.flops import conv2d_flops, conv2d_output_size, linear_flops

__all__ = ["SmallCNN", "pooled_pixels", "train_classifier"]


class SmallCNN(nn.Module):
    """Two 3x3 stride-2 convolutions with ReLU, then a linear classifier.

    Parameters
    ----------
    in_channels, num_classes : int
        Input channels and output classes.
    image_size : int
        Side of the square inputs.
    widths : tuple of 2 int, optional
        Channels of the two convolutions.
    """

    def __init__(
        self, in_channels: int, num_classes: int, image_size: int, widths: tuple[int, int] = (8, 16)
    ) -> None:
        super().__init__()
        if image_size < 4 or num_classes < 2 or in_channels < 1:
            raise ValueError(
                f"need image_size >= 4, num_classes >= 2, in_channels >= 1; got "
                f"{image_size}, {num_classes}, {in_channels}"
            )
        self.in_channels, self.num_classes, self.image_size = in_channels, num_classes, image_size
        self.widths = widths
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 2, 1)
        self.conv2 = nn.Conv2d(widths[0], widths[1], 3, 2, 1)
        self._s1 = conv2d_output_size(image_size, 3, 2, 1)
        self._s2 = conv2d_output_size(self._s1, 3, 2, 1)
        self.fc = nn.Linear(widths[1] * self._s2 * self._s2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` for ``x`` of shape ``(N, in_channels, size, size)``."""
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.fc(x.flatten(1))

    def flops(self) -> int:
        """Analytic FLOPs per sample."""
        c0, (c1, c2) = self.in_channels, self.widths
        return (
            conv2d_flops(c0, c1, 3, self._s1, self._s1)
            + conv2d_flops(c1, c2, 3, self._s2, self._s2)
            + linear_flops(c2 * self._s2 * self._s2, self.num_classes)
        )


def pooled_pixels(x: torch.Tensor, size: int = 8) -> torch.Tensor:
    """Average-pool images ``(N, C, H, W)`` to ``size x size`` and flatten: ``(N, C * size**2)``."""
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(x.shape)}")
    return F.adaptive_avg_pool2d(x, size).flatten(1)


def train_classifier(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
) -> list[float]:
    """Train any logits-producing module with AdamW and cross-entropy.

    Returns
    -------
    list of float
        Mean training loss of each epoch.
    """
    if x.shape[0] != y.shape[0] or x.shape[0] == 0 or epochs < 1:
        raise ValueError(
            f"need matching non-empty x and y and epochs >= 1, got {len(x)}, {len(y)}, {epochs}"
        )
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-4)
    losses = []
    module.train()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=generator)
        total = 0.0
        for start in range(0, x.shape[0], batch_size):
            index = order[start : start + batch_size]
            loss = F.cross_entropy(module(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * index.numel()
        losses.append(total / x.shape[0])
    module.eval()
    return losses
