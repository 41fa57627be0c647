"""Analytic FLOP formulas against torch's FlopCounterMode on real layers."""

import pytest
import torch
from torch import nn
from vj_dynamic.flops import (
    conv2d_flops,
    conv2d_output_size,
    count_flops,
    linear_flops,
    lstm_cell_flops,
)


@pytest.mark.parametrize(
    ("cin", "cout", "k", "stride", "pad", "groups", "size"),
    [
        (3, 8, 3, 1, 1, 1, 17),
        (8, 16, 3, 2, 1, 1, 16),
        (4, 6, 1, 2, 0, 2, 9),
        (5, 7, 5, 3, 2, 1, 11),
    ],
)
def test_conv_formula_matches_counter(cin, cout, k, stride, pad, groups, size):
    conv = nn.Conv2d(cin, cout, k, stride, pad, groups=groups)
    x = torch.zeros(3, cin, size, size)
    counted, out = count_flops(conv, x)
    oh = conv2d_output_size(size, k, stride, pad)
    assert out.shape[-1] == oh
    assert counted == 3 * conv2d_flops(cin, cout, k, oh, oh, groups=groups)


def test_linear_and_lstm_formulas_match_counter():
    counted, _ = count_flops(nn.Linear(13, 7), torch.zeros(5, 13))
    assert counted == 5 * linear_flops(13, 7) == 5 * 2 * 13 * 7
    cell = nn.LSTMCell(6, 10)
    counted, _ = count_flops(cell, torch.zeros(4, 6), (torch.zeros(4, 10), torch.zeros(4, 10)))
    assert counted == 4 * lstm_cell_flops(6, 10) == 4 * (2 * 40 * 6 + 2 * 40 * 10)


def test_known_values():
    # 16 -> 16 channels, 3x3, on a 32x32 output: 16 * 16 * 9 * 1024 multiply-adds.
    assert conv2d_flops(16, 16, 3, 32, 32) == 2 * 2_359_296
    assert conv2d_output_size(32, 3, 2, 1) == 16
    assert conv2d_output_size(7, 3, 2, 1) == 4


@pytest.mark.parametrize(
    "call",
    [
        lambda: conv2d_flops(0, 4, 3, 8, 8),
        lambda: conv2d_flops(6, 4, 3, 8, 8, groups=4),
        lambda: conv2d_output_size(2, 5),
        lambda: linear_flops(3, -1),
        lambda: lstm_cell_flops(2.5, 3),
    ],
)
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()
