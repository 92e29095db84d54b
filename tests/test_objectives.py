import pytest
import torch

from dgncore.drawing.objectives import Objective, parse_target
from dgncore.errors import InputError


def test_class_lookup(tiny_classifier):
    assert parse_target("class:tench", tiny_classifier).units == (0,)
    assert parse_target("class:3", tiny_classifier).units == (3,)
    assert parse_target("class:OSTRICH", tiny_classifier).units == (9,)
    assert parse_target("class:hammer", tiny_classifier).units == (4,)  # unambiguous substring


@pytest.mark.parametrize("text, fragment", [
    ("class:shark", "ambiguous"),
    ("class:dog", "unknown class"),
    ("class:99", "out of range"),
    ("filter:nope:1", "unknown layer"),
    ("filter:features.0:8", "out of range"),
    ("neuron:features.0:1:99:0", "out of range"),
    ("classes:tench+tench", "twice"),
    ("classes:tench*abc+hen", "bad weight"),
    ("bogus:1", "unknown target kind"),
    ("tench", "cannot read target"),
])
def test_bad_targets_are_input_errors(tiny_classifier, text, fragment):
    with pytest.raises(InputError, match=fragment):
        parse_target(text, tiny_classifier)


def test_spec_round_trips(tiny_classifier):
    for text in ["class:hen", "classes:tench+hen*0.5", "filter:features.2:3", "neuron:features.0:1:4:5", "group:features.2:1,2*0.5"]:
        t = parse_target(text, tiny_classifier)
        assert parse_target(t.spec, tiny_classifier) == t


def test_equation_2(tiny_classifier):
    t = parse_target("classes:tench+hen*0.5", tiny_classifier)
    obj = Objective([t], 10, penalty=0.1)
    logits = torch.tensor([[2.0, -1.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 4.0, 1.0]])
    loss, act = obj.loss(logits, {}, torch.tensor([0.25]))
    expected = -(2.0 + 0.5 * 4.0) + 0.1 * (3.0 + 1.0) + 0.25  # ReLU on the others: -1 does not count
    assert torch.allclose(loss, torch.tensor([expected]))
    assert torch.allclose(act, torch.tensor([4.0]))


def test_relu_trap_still_has_gradient(tiny_classifier):
    """A target whose logit starts negative must still get a gradient (warm-up on the raw logit)."""
    t = parse_target("class:tench", tiny_classifier)
    logits = torch.tensor([[-3.0] + [0.5] * 9], requires_grad=True)
    loss, _ = Objective([t], 10).loss(logits, {}, torch.zeros(1))
    loss.sum().backward()
    assert logits.grad[0, 0] < 0


def test_layer_targets_use_channel_means(tiny_classifier):
    t = parse_target("group:features.0:1,2*0.5", tiny_classifier)
    acts = {"features.0": torch.arange(2 * 8 * 4 * 4, dtype=torch.float).view(2, 8, 4, 4)}
    obj = Objective([t, t], 10)
    a = obj.activation(torch.zeros(2, 10), acts)
    m = acts["features.0"].mean((2, 3))
    assert torch.allclose(a, m[:, 1] + 0.5 * m[:, 2])
    assert torch.isnan(obj.probability(torch.zeros(2, 10))).all()


def test_several_views_of_a_row_average_their_losses(tiny_classifier):
    """Logits holding two views of each row (view after view) give each row the mean of
    its views' losses and activations, for class and layer targets alike."""
    targets = [parse_target("class:tench", tiny_classifier), parse_target("filter:features.2:3", tiny_classifier)]
    obj = Objective(targets, 10, penalty=0.1)
    logits = torch.randn(4, 10)
    acts = {"features.2": torch.randn(4, 8, 5, 5)}
    reg = torch.tensor([0.5, 0.25])
    loss, act = obj.loss(logits, acts, reg)
    one = [obj.loss(logits[v * 2:(v + 1) * 2], {"features.2": acts["features.2"][v * 2:(v + 1) * 2]}, reg) for v in (0, 1)]
    assert loss.shape == (2,) and torch.allclose(loss, (one[0][0] + one[1][0]) / 2)
    assert torch.allclose(act, (one[0][1] + one[1][1]) / 2)
