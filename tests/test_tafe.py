"""TAFE-Net: shapes, gradients, weights generated for unseen tasks, meta-training, accounting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from vj_dynamic.face.few_shot import (
    best_threshold,
    nearest_neighbour_scores,
    person_folds,
    sample_episodes,
    tafe_scores,
    verification_metrics,
)
from vj_dynamic.flops import count_flops
from vj_dynamic.tafe import FactorizedLinear, TafeNet, embedding_loss
from vj_dynamic.tafe_training import TafeTrainConfig, sample_tasks, train_tafe


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small networks: one thread is faster than two, and far faster on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def clustered_features(n_classes: int = 12, per_class: int = 8, dim: int = 16, noise: float = 0.6,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit features around one random centre per class; only the first half of the
    dimensions tell classes apart, the rest is noise (a metric to learn)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    centres[:, dim // 2:] = 0
    labels = np.repeat(np.arange(n_classes), per_class)
    x = centres[labels] + noise * rng.normal(size=(len(labels), dim))
    x[:, dim // 2:] += 2.0 * rng.normal(size=(len(labels), dim - dim // 2))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def test_shapes_and_padding():
    torch.manual_seed(0)
    net = TafeNet(features=16, hidden=24)
    weights = net.task(torch.randn(4, 5, 16), counts=torch.tensor([1, 2, 5, 3]))
    assert weights.embedding.shape == (4, 16) and weights.support.shape == (4, 5, 16)
    assert [f.shape for f in weights.factors] == [(4, 24), (4, 16)]
    logits, embedded = net(torch.randn(4, 7, 16), weights)
    assert logits.shape == (4, 7) and embedded.shape == (4, 7, 16)
    torch.testing.assert_close(embedded.norm(dim=-1), torch.ones(4, 7))
    # Padded examples are ignored: a task of 1 real example equals the same task unpadded.
    support = torch.randn(1, 3, 16)
    query = torch.randn(1, 4, 16)
    padded = net(query, net.task(support, counts=torch.tensor([1])))[0]
    single = net(query, net.task(support[:, :1]))[0]
    torch.testing.assert_close(padded, single)


def test_bad_inputs_are_named():
    net = TafeNet(features=8, hidden=8)
    with pytest.raises(ValueError, match="support must be"):
        net.task(torch.randn(2, 3, 9))
    with pytest.raises(ValueError, match="counts"):
        net.task(torch.randn(2, 3, 8), counts=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="query groups"):
        net(torch.randn(3, 2, 8), net.task(torch.randn(2, 3, 8)))
    with pytest.raises(ValueError, match="factors"):
        FactorizedLinear(8, 4)(torch.randn(2, 3, 8), torch.ones(2, 5))
    with pytest.raises(ValueError, match="positive"):
        TafeNet(features=0)


def test_gradients_reach_every_part():
    # The generated layers start as the identity (zero weights), which blocks the
    # gradient of what lies before them; after a step, every parameter learns.
    torch.manual_seed(0)
    net = TafeNet(features=16, hidden=24)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for step in range(2):
        support, query, target = sample_tasks(*_views(), n_tasks=4, k=3, queries=6,
                                              rng=np.random.default_rng(step))
        weights = net.task(support)
        logits, embedded = net(query, weights)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        optimiser.zero_grad()
        (loss + embedding_loss(embedded, weights.embedding, target)).backward()
        if step == 0:
            assert net.meta.generators[0].bias.grad.abs().sum() == 0  # the identity start
            optimiser.step()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def _views():
    x, labels = clustered_features()
    return x[None], labels


def test_initial_network_is_nearest_neighbour_cosine():
    # Generated as the identity: one example, TAFE-Net ranks queries by plain cosine.
    torch.manual_seed(0)
    net = TafeNet(features=16, hidden=24).eval()
    x, _ = clustered_features()
    with torch.no_grad():
        logits, _ = net(torch.from_numpy(x[None, 1:]), net.task(torch.from_numpy(x[None, :1])))
    cosine = x[1:] @ x[0]
    assert np.array_equal(np.argsort(logits[0].numpy()), np.argsort(cosine))


def test_weights_generated_for_an_unseen_task():
    torch.manual_seed(0)
    x, labels = clustered_features()
    net = TafeNet(features=16, hidden=24)
    train_tafe(net, x[None, labels < 8], labels[labels < 8], TafeTrainConfig(steps=60))
    unseen = torch.from_numpy(x[labels == 10][None, :3])
    with torch.no_grad():
        a, b = net.task(unseen), net.task(unseen.flip(1))      # order-free
        other = net.task(torch.from_numpy(x[labels == 11][None, :3]))
    for fa, fb, fo in zip(a.factors, b.factors, other.factors, strict=True):
        torch.testing.assert_close(fa, fb)
        assert not torch.allclose(fa, fo)                        # task-specific weights
        assert not torch.allclose(fa, torch.ones_like(fa))       # moved from the identity
        assert torch.isfinite(fa).all()


def test_meta_training_beats_cosine_on_unseen_classes():
    # Half the dimensions are noise; meta-training learns to discount them for classes
    # it never saw, which plain cosine cannot.
    x, labels = clustered_features(n_classes=40, per_class=8, noise=0.5, seed=1)
    seen = labels < 30
    net = TafeNet(features=16, hidden=32)
    losses = train_tafe(net, x[None, seen], labels[seen], TafeTrainConfig(steps=300, seed=0))
    assert np.mean(losses[-50:]) < np.mean(losses[:50])
    episodes = sample_episodes(labels, np.arange(30, 40), 1, 6, np.random.default_rng(0))
    y = np.concatenate([e.labels for e in episodes])
    tafe = verification_metrics(tafe_scores(net, x, episodes), y, 0.0)["auc"]
    cosine = verification_metrics(nearest_neighbour_scores(x, episodes), y, 0.5)["auc"]
    assert tafe > cosine + 0.02, (tafe, cosine)


def test_flops_match_the_counter():
    net = TafeNet(features=16, hidden=24).eval()
    support, query = torch.randn(1, 5, 16), torch.randn(1, 7, 16)
    measured_task, weights = count_flops(net.task, support)
    measured_query, _ = count_flops(net, query, weights)
    assert measured_task == net.task_flops(5)
    # The counter also counts the (tiny) cosine products; the analytic figure includes them.
    assert measured_query == 7 * net.query_flops(5)


def test_episode_sampling_and_folds():
    person = np.repeat(np.arange(6), 4)
    episodes = sample_episodes(person, np.array([0, 1, 2]), 2, 3, np.random.default_rng(0),
                               n_pos=2, n_neg=3)
    assert len(episodes) == 9
    for e in episodes:
        owner = person[e.support[0]]
        assert np.all(person[e.support] == owner) and not set(e.support) & set(e.query)
        assert np.array_equal(person[e.query] == owner, e.labels > 0)
        assert set(person[e.query]) <= {0, 1, 2}
    folds = person_folds(40, 4, 5)
    tested = np.concatenate([test for _, _, test in folds])
    assert sorted(tested.tolist()) == list(range(40))
    for train, val, test in folds:
        assert len(test) == 10 and len(val) == 5 and len(train) == 25
        assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    with pytest.raises(ValueError):
        person_folds(6, 4, 5)


def test_best_threshold():
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.7])
    labels = np.array([0, 0, 1, 1, 1])
    t = best_threshold(scores, labels)
    assert np.mean((scores > t) == labels) == 0.8
    assert best_threshold(np.array([1.0, 2.0]), np.array([1, 1])) < 1.0


def test_recognition_benchmark_runs_end_to_end():
    from dataclasses import replace

    from vj_dynamic.face.identity import FaceIdentityModel, IdentitySet
    from vj_dynamic.face.recognition_benchmark import (
        RecognitionBenchmarkConfig,
        format_recognition_report,
        run_recognition_benchmark,
    )

    rng = np.random.default_rng(0)
    people = np.repeat(np.arange(12), 7)
    # Each person is a random face-sized pattern plus noise: a learnable identity.
    base = rng.integers(0, 256, (12, 32, 32))
    crops = np.clip(base[people] + rng.normal(0, 25, (len(people), 32, 32)), 0, 255)
    identities = IdentitySet(crops.astype(np.uint8), people, [f"p{i}" for i in range(12)])
    torch.manual_seed(0)
    config = replace(RecognitionBenchmarkConfig.quick(), n_val=2, steps=20, timing_faces=3,
                     timing_people=2, repeats=2)
    results = run_recognition_benchmark(FaceIdentityModel().eval(), identities, config)
    assert len(results["folds"]) == 2 and set(results["summary"]) == {"1", "3", "5"}
    for methods in results["summary"].values():
        for m in methods.values():
            assert 0 <= m["auc"] <= 1 and 0 <= m["accuracy"] <= 1
    # Distinct patterns: even an untrained backbone tells these people apart.
    assert results["summary"]["5"]["nearest_neighbour"]["auc"] > 0.9
    assert results["timing"]["flops"]["tafe"] > results["timing"]["flops"]["nearest_neighbour"]
    assert "TAFE-Net" in format_recognition_report(results)


def test_nmn_benchmark_app_quick(tmp_path):
    import json

    from vj_apps.bench import nmn as bench_nmn

    out = tmp_path / "nmn.json"
    assert bench_nmn.main(["--quick", "--json", str(out), "--repeats", "1"]) == 0
    results = json.loads(out.read_text())
    assert set(results["models"]) == {"nmn", "monolithic"}
    t = results["timing"]
    assert t["layout_groups"] >= 3 and set(t["ms"]) == {"nmn_batched", "nmn_one_by_one",
                                                        "monolithic_batched"}
    assert t["flops_per_question"]["nmn_batched"] < t["flops_per_question"]["nmn_one_by_one"]
