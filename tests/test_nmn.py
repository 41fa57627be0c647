"""Neural module networks: the SHAPES generator, the question parse, batched execution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from vj_dynamic.bench.shapes import (
    COLOURS,
    QUESTION_WORDS,
    SHAPES,
    encode_questions,
    make_shapes,
    make_shapes_splits,
)
from vj_dynamic.bench.vqa_baseline import MonolithicVQA, budget_matched_baseline, parameter_count
from vj_dynamic.nmn import NeuralModuleNetwork
from vj_dynamic.nmn_layout import (
    group_layouts,
    layout_structure,
    layout_to_text,
    parse_question,
)
from vj_dynamic.nmn_training import VQATrainConfig, accuracy, train_vqa


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small networks: one thread is faster than two, and far faster on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(60, seed=3)


def test_generator_is_deterministic_and_seeded(shapes):
    again = make_shapes(60, seed=3)
    assert np.array_equal(shapes.images, again.images)
    assert shapes.questions == again.questions
    assert np.array_equal(shapes.answers, again.answers)
    other = make_shapes(60, seed=4)
    assert not np.array_equal(shapes.images, other.images)


def test_generator_shapes_balance_and_templates(shapes):
    assert shapes.images.shape == (60, 3, 30, 30) and shapes.images.dtype == np.uint8
    assert len(shapes) == len(shapes.image_index) == len(shapes.answers)
    assert 0.35 < shapes.answers.mean() < 0.65
    assert set(shapes.templates) == {"exists", "exists_pair", "relation", "describe_colour",
                                     "describe_shape"}


def test_answers_follow_the_grid(shapes):
    for question, answer, i in zip(shapes.questions, shapes.answers, shapes.image_index,
                                   strict=True):
        kinds, colours = shapes.kinds[i], shapes.colours[i]
        words = question.split()
        if question.startswith("is there a") and len(words) == 5 and words[4] in SHAPES:
            both = (colours == list(COLOURS).index(words[3])) & (kinds == SHAPES.index(words[4]))
            assert answer == int(both.any()), question


def test_empty_cells_are_background(shapes):
    cell = (shapes.kinds == -1)[:, :, :, None, None]
    pixels = shapes.images.reshape(60, 3, 3, 10, 3, 10).transpose(0, 2, 4, 1, 3, 5)
    assert pixels[np.broadcast_to(cell[..., None], pixels.shape)].mean() < 30
    assert pixels[~np.broadcast_to(cell[..., None], pixels.shape)].max() > 150


def test_splits_share_no_image():
    splits = make_shapes_splits(20, 10, 10, seed=1)
    flat = {tuple(im.ravel()[:300]) for im in splits.train.images}
    assert not any(tuple(im.ravel()[:300]) in flat for im in splits.test.images)


def test_bad_generator_arguments():
    with pytest.raises(ValueError, match="n_images"):
        make_shapes(0)
    with pytest.raises(ValueError, match="fill"):
        make_shapes(3, fill=0.0)
    with pytest.raises(ValueError, match="unknown word 'purple'"):
        encode_questions(["is there a purple shape"])


@pytest.mark.parametrize("question, text", [
    ("is there a red shape", "exists(find[red])"),
    ("is there a blue circle", "exists(and(find[blue], find[circle]))"),
    ("is there a circle left of a green shape",
     "exists(and(find[circle], relate[left of](find[green])))"),
    ("is the square red?", "describe[red](find[square])"),
    ("Is the blue shape a triangle", "describe[triangle](find[blue])"),
])
def test_parse(question, text):
    assert layout_to_text(parse_question(question)) == text


@pytest.mark.parametrize("question, word", [
    ("is there a purple shape", "purple"),
    ("is the circle a red", "red"),
    ("is there a red shape near a circle", "near"),
    ("was there a circle", "was"),
])
def test_parse_errors_name_the_word(question, word):
    with pytest.raises(ValueError, match=f"got '{word}'"):
        parse_question(question)


def test_structure_and_grouping():
    layouts = [parse_question(q) for q in (
        "is there a red shape", "is the circle blue", "is there a square", "is the square red")]
    structure, words = layout_structure(layouts[1])
    assert structure == ("describe", None, ("find", None)) and words == ("blue", "circle")
    groups = group_layouts(layouts, NeuralModuleNetwork().words)
    assert len(groups) == 2
    members = sorted(tuple(m.tolist()) for m, _ in groups.values())
    assert members == [(0, 2), (1, 3)]
    with pytest.raises(ValueError, match="unknown word"):
        group_layouts([("exists", ("find", "purple"))], ("red",))


def test_batched_execution_equals_one_by_one(shapes):
    torch.manual_seed(0)
    net = NeuralModuleNetwork().eval()
    layouts = [parse_question(q) for q in shapes.questions]
    assert len(group_layouts(layouts, net.words)) >= 4  # heterogeneous layouts
    with torch.no_grad():
        batched = net(shapes.images, layouts, shapes.image_index)
        single = net.forward_one_by_one(shapes.images, layouts, shapes.image_index)
    assert batched.shape == (len(shapes),)
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)
    assert batched.std() > 0


def test_modules_shapes_and_gradients():
    torch.manual_seed(0)
    net = NeuralModuleNetwork()
    images = torch.rand(4, 3, 30, 30) - 0.5
    features = net.encoder(images)
    assert features.shape == (4, 32, 3, 3)
    word = torch.tensor([0, 1, 2, 3])
    attention = net.find(features, word)
    assert attention.shape == (4, 3, 3) and 0 < attention.min() and attention.max() < 1
    assert net.relate(attention, torch.tensor([6, 7, 8, 9])).shape == (4, 3, 3)
    layouts = [parse_question("is there a red shape above a circle")] * 4
    net(images, layouts).sum().backward()
    for name in ("find_map.weight", "exists_out.weight", "encoder.conv1.weight"):
        assert net.get_parameter(name).grad.abs().sum() > 0, name
    assert net.describe_out.weight.grad is None  # not in these layouts
    # "and" is an element-wise minimum, so a whole layout may route no gradient through
    # one branch for a given input; the relate module itself must still be trainable.
    net.zero_grad()
    net.relate(attention.detach(), torch.tensor([6, 7, 8, 9])).sum().backward()
    assert net.relate_kernel.weight.grad.abs().sum() > 0


def test_layout_flops_grow_with_modules():
    net = NeuralModuleNetwork()
    small = net.layout_flops(parse_question("is there a red shape"))
    large = net.layout_flops(parse_question("is there a red circle above a square"))
    assert large > small > net.encoder.flops()


def test_budget_matched_baseline():
    target = parameter_count(NeuralModuleNetwork())
    baseline = budget_matched_baseline(target)
    assert abs(parameter_count(baseline) - target) / target < 0.05
    logits = baseline(torch.zeros(2, 3, 30, 30), MonolithicVQA.prepare(
        ["is there a red shape", "is the circle blue"]))
    assert logits.shape == (2,)
    assert len(QUESTION_WORDS) == len(set(QUESTION_WORDS))


def test_training_learns_an_easy_question_set():
    # Colour-existence questions only: a few epochs must beat chance clearly.
    data = make_shapes(160, 4, seed=5)
    keep = [i for i, t in enumerate(data.templates) if t == "exists"]
    from dataclasses import replace
    subset = replace(data, questions=[data.questions[i] for i in keep],
                     image_index=data.image_index[keep], answers=data.answers[keep],
                     templates=[data.templates[i] for i in keep])
    net = NeuralModuleNetwork()
    history = train_vqa(net, subset, subset, VQATrainConfig(epochs=8, lr=1e-2, batch_size=32))
    assert len(history["loss"]) == 8 and history["loss"][-1] < history["loss"][0]
    assert accuracy(net, subset) > 0.7
