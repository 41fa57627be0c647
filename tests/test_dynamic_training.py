"""SkipNet training phases on tiny data: each runs and lowers its loss."""

import copy

import numpy as np
import pytest
import torch
from vj_dynamic.bench.datasets import load_digits_upsampled
from vj_dynamic.latency import torch_threads
from vj_dynamic.skipnet import SkipResNet
from vj_dynamic.skipnet_rl import block_costs, policy_returns
from vj_dynamic.skipnet_training import (
    TrainConfig,
    evaluate,
    fine_tune_on_policy,
    random_shift,
    reinforce_loss,
    train_dense,
    train_hybrid_rl,
    train_supervised_gates,
    tune_gate_threshold,
)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.manual_seed(0)
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def tiny():
    """96 digits at 16x16, three classes: learnable in a few dozen steps."""
    data = load_digits_upsampled(16, seed=0)
    keep = (data.y_train < 3).nonzero().squeeze(1)[:96]
    return data.x_train[keep], data.y_train[keep]


def tiny_net():
    torch.manual_seed(0)
    return SkipResNet(depth=8, num_classes=3, in_channels=1, widths=(4, 8, 8))


def test_dense_training_lowers_the_loss(tiny):
    x, y = tiny
    history = train_dense(tiny_net(), x, y, TrainConfig(epochs=8, batch_size=16, lr=0.03))
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]


def test_supervised_gate_training_lowers_the_loss_and_trains_gates(tiny):
    x, y = tiny
    net = tiny_net()
    before = copy.deepcopy(net.gates.state_dict())
    history = train_supervised_gates(net, x, y, TrainConfig(epochs=8, batch_size=16, lr=0.03))
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    changed = [not torch.equal(before[k], v) for k, v in net.gates.state_dict().items()]
    assert all(changed)  # the straight-through gradient reached every gate parameter


def test_straight_through_gradient_reaches_the_gates(tiny):
    x, y = tiny
    net = tiny_net().train()
    out = net(x[:8], execution="masked", policy="hard")
    torch.nn.functional.cross_entropy(out.logits, y[:8]).backward()
    assert net.gates.proj.weight.grad.abs().sum() > 0
    net.zero_grad()
    out = net(x[:8], execution="masked", policy="sample")
    torch.nn.functional.cross_entropy(out.logits, y[:8]).backward()
    assert net.gates.proj.weight.grad is None or net.gates.proj.weight.grad.abs().sum() == 0


def test_hybrid_rl_lowers_the_loss_and_learns_to_skip(tiny):
    x, y = tiny
    net = tiny_net()
    train_dense(net, x, y, TrainConfig(epochs=2, batch_size=16, lr=0.01))
    config = TrainConfig(epochs=5, batch_size=16, lr=3e-3, gate_lr_scale=30)
    history = train_hybrid_rl(net, x, y, config, alpha=2.0)
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["reward"] > history[0]["reward"]
    assert history[-1]["execution_rate"] < history[0]["execution_rate"]


def test_reinforce_pushes_rewarded_actions_up():
    logits = torch.zeros(4, 2, requires_grad=True)
    # first gate: ran, skipped, ran, skipped; samples 0-1 then classified well, 2-3 badly
    actions = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    loss, returns = reinforce_loss(logits, actions, torch.tensor([0.0, 0.0, 5.0, 5.0]), alpha=0.0)
    loss.backward()
    assert returns.shape == (4, 2)
    # a gradient step (-grad) makes the decisions that paid off more likely, the rest less:
    # P(run) up for 0 (ran, good) and 3 (skipped, bad), down for 1 and 2
    signs = torch.sign(logits.grad[:, 0]).tolist()
    assert signs == [-1.0, 1.0, 1.0, -1.0]
    # with equal losses, the skip reward alone favours skipping: P(run) goes down for both
    logits = torch.zeros(2, 1, requires_grad=True)
    loss, returns = reinforce_loss(logits, torch.tensor([[1.0], [0.0]]), torch.zeros(2), alpha=1.0)
    loss.backward()
    assert returns[1, 0] > returns[0, 0]
    assert (logits.grad > 0).all()


def test_evaluate_and_threshold_tuning(tiny):
    x, y = tiny
    net = tiny_net()
    train_dense(net, x, y, TrainConfig(epochs=3, batch_size=16, lr=0.01))
    dense = evaluate(net, x, y, execution="dense")
    assert dense.executed.all() and dense.predictions.shape == (96,)
    threshold, table = tune_gate_threshold(net, x, y, min_accuracy=dense.accuracy - 0.05)
    chosen = next(row for row in table if row[0] == threshold)
    assert net.gate_threshold == threshold
    assert chosen[1] >= dense.accuracy - 0.05
    feasible = [row for row in table if row[1] >= dense.accuracy - 0.05]
    assert chosen[2] == min(row[2] for row in feasible)


def test_random_shift_moves_content():
    x = torch.zeros(3, 1, 8, 8)
    x[:, :, 4, 4] = 1.0
    shifted = random_shift(x, 2, torch.Generator().manual_seed(1))
    assert shifted.shape == x.shape
    positions = [tuple(np.argwhere(s[0].numpy() == 1.0)[0]) for s in shifted]
    assert all(abs(r - 4) <= 2 and abs(c - 4) <= 2 for r, c in positions)
    assert len(set(positions)) > 1
    assert random_shift(x, 0, torch.Generator()) is x


def test_bad_training_arguments(tiny):
    x, y = tiny
    with pytest.raises(ValueError):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="shape"):
        train_dense(tiny_net(), x, y[:-1], TrainConfig(epochs=1))
    with pytest.raises(ValueError, match="alpha"):
        train_hybrid_rl(tiny_net(), x, y, TrainConfig(epochs=1), alpha=-1.0)


def test_fine_tuning_on_the_policy_leaves_the_gates_alone(tiny):
    x, y = tiny
    net = SkipResNet(depth=8, num_classes=3, in_channels=1, widths=(4, 8, 8), gate_norm=True)
    train_dense(net, x, y, TrainConfig(epochs=2, batch_size=16, lr=0.01))
    gates = copy.deepcopy(net.gates.state_dict())
    body = copy.deepcopy(net.fc.state_dict())
    history = fine_tune_on_policy(net, x, y, TrainConfig(epochs=2, batch_size=16, lr=3e-3))
    assert set(history[-1]) == {"loss", "accuracy", "execution_rate"}
    for key, value in net.gates.state_dict().items():
        assert torch.equal(gates[key], value), key  # weights and input statistics alike
    assert not torch.equal(body["weight"], net.fc.weight)
    assert all(p.requires_grad for p in net.gates.parameters())


def test_greedy_baseline_credits_what_the_sampled_path_changed():
    logits = torch.zeros(2, 1, requires_grad=True)
    actions = torch.tensor([[0.0], [0.0]])  # both skipped
    # sample 0: skipping cost nothing against its greedy path; sample 1: it cost 2 nats
    greedy = policy_returns(torch.ones(2, 1), torch.tensor([1.0, 1.0]), alpha=0.5)
    loss, _ = reinforce_loss(logits, actions, torch.tensor([1.0, 3.0]), alpha=0.5, baseline=greedy)
    loss.backward()
    # skipping is made likelier (P(run) down) for sample 0 and less likely for sample 1
    assert logits.grad[0, 0] > 0 and logits.grad[1, 0] < 0


def test_block_costs_are_shares_of_the_skippable_flops():
    net = tiny_net()
    costs = block_costs(net, 16, 16)
    breakdown = net.flop_breakdown(16, 16)
    saved = np.subtract(breakdown.blocks[1:], breakdown.shortcuts[1:])
    np.testing.assert_allclose(costs.numpy(), saved / saved.sum(), rtol=1e-6)
    returns = policy_returns(
        torch.tensor([[0.0, 1.0]]), torch.zeros(1), alpha=1.0, gamma=1.0, costs=costs
    )
    assert returns[0, 0].item() == pytest.approx(costs[0].item())


def test_exploration_keeps_every_path_possible():
    from vj_dynamic.skipnet import sampling_probability

    logits = torch.tensor([-50.0, 0.0, 50.0])
    q = sampling_probability(logits, 0.2)
    torch.testing.assert_close(q, torch.tensor([0.1, 0.5, 0.9]))
    net = tiny_net().train()
    with pytest.raises(ValueError, match="explore"):
        net(torch.zeros(2, 1, 16, 16), policy="sample", explore=1.0)
    with pytest.raises(ValueError, match="baseline"):
        train_hybrid_rl(
            net,
            torch.zeros(4, 1, 16, 16),
            torch.zeros(4, dtype=torch.long),
            TrainConfig(epochs=1),
            baseline="none",
        )


def test_gate_only_rl_leaves_the_body_alone_and_margin_is_checked(tiny):
    x, y = tiny
    net = SkipResNet(depth=8, num_classes=3, in_channels=1, widths=(4, 8, 8), gate_norm=True)
    train_dense(net, x, y, TrainConfig(epochs=1, batch_size=16, lr=0.01))
    body = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("gates.")}
    gates = {k: v.clone() for k, v in net.gates.state_dict().items()}
    config = TrainConfig(epochs=1, batch_size=16, lr=3e-3, gate_lr_scale=10)
    history = train_hybrid_rl(net, x, y, config, alpha=1.0, train_body=False, loss_margin=0.5)
    assert np.isfinite(history[-1]["reward"])
    for key, value in net.state_dict().items():
        if not key.startswith("gates."):
            assert torch.equal(body[key], value), key  # weights and batch-norm statistics
    assert any(not torch.equal(gates[k], v) for k, v in net.gates.state_dict().items())
    assert all(p.requires_grad for p in net.parameters())
    with pytest.raises(ValueError, match="loss_margin"):
        train_hybrid_rl(net, x, y, config, loss_margin=-1.0)
