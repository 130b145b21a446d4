"""ICIP 2024 against its authors' code, fact by fact (SEED_SYSTEMS.md section 1): branches,
pooling, the enhanced attention checked by hand, the per-step weighted loss, L2, initialisation,
scoring and the `paper` recipes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from merkit.errors import ConfigError
from merkit.models import create_model, get_descriptor
from merkit.models.icip24 import EnhancedCBAM, pooled_steps
from merkit.training.config import ExperimentConfig, with_overrides
from merkit.training.recipe import default_recipe

TINY = {"frame_channels": 1, "size": 16, "filters": 4, "reduction": 2, "hidden": 8}


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def test_layers_and_shapes_follow_the_authors_table() -> None:
    """30 frames of 128 x 128 -> branches (32, 15, 64, 64) -> fuse (32, 8, 32, 32) -> 8 steps."""
    model = create_model("icip24", 3, 90)  # the authors' network is the default
    assert model.branch5[0].kernel_size == (5, 5, 5) and model.branch5[0].padding == (2, 2, 2)
    assert model.branch3[0].kernel_size == (3, 3, 3) and model.branch3[0].out_channels == 32
    assert model.fuse[0].in_channels == 64 and model.fuse[0].out_channels == 32
    assert all(unit[1].negative_slope == 0.2 for unit in (model.branch5, model.branch3, model.fuse))
    assert all(
        unit[2].ceil_mode and unit[2].kernel_size == 2 for unit in (model.branch5, model.fuse)
    )
    assert model.dense1.in_features == 32 * 32 * 32 and model.dense1.out_features == 128
    assert model.dense2.out_features == 64 and model.gru.hidden_size == 1024
    assert (model.head1.out_features, model.head2.out_features, model.dropout.p) == (32, 3, 0.5)
    assert pooled_steps(30) == 8 and pooled_steps(10) == 3  # time pooled with ceil: 30 -> 15 -> 8
    small = create_model("icip24", 3, 30, **TINY)
    x = torch.rand(2, 30, 16, 16)
    clip = (x[:, :, None] - 0.5) / 0.5
    branch = small.branch5(clip.transpose(1, 2))
    assert branch.shape == (2, 4, 15, 8, 8)
    assert small.step_logits(x).shape == (2, 8, 3)
    assert small.eval()(x).shape == (2, 3)


def test_enhanced_channel_attention_matches_a_hand_computation() -> None:
    torch.manual_seed(0)
    block = EnhancedCBAM(4, reduction=2, slope=0.2)
    x = torch.randn(1, 4, 2, 3, 3)
    out = block(x).detach().numpy()
    v = x.numpy()[0]  # (C, T, H, W)

    def mlp(seq: nn.Sequential, z: np.ndarray) -> np.ndarray:
        w1, b1 = seq[0].weight.detach().numpy(), seq[0].bias.detach().numpy()
        w2, b2 = seq[2].weight.detach().numpy(), seq[2].bias.detach().numpy()
        h = w1 @ z + b1
        h = np.where(h > 0, h, 0.2 * h)
        return w2 @ h + b2

    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    peak, mean = v.max(axis=(1, 2, 3)), v.mean(axis=(1, 2, 3))
    channel = sigmoid(0.5 * (mlp(block.mlp_max, peak) - mlp(block.mlp_avg, mean)))  # difference
    stacked = np.stack([v.max(axis=0), v.mean(axis=0)])  # (2, T, H, W): [max, mean]
    padded = np.pad(stacked, ((0, 0), (1, 1), (1, 1), (1, 1)))
    weight, bias = block.spatial.weight.detach().numpy(), block.spatial.bias.detach().numpy()
    spatial = np.zeros_like(v)
    for c in range(4):
        for t in range(2):
            for i in range(3):
                for j in range(3):
                    window = padded[:, t : t + 3, i : i + 3, j : j + 3]
                    spatial[c, t, i, j] = sigmoid((weight[c] * window).sum() + bias[c])
    expected = v * channel[:, None, None, None] * spatial  # parallel maps, 4 spatial channels
    np.testing.assert_allclose(out[0], expected, rtol=1e-5, atol=1e-6)
    assert block.mlp_max[0] is not block.mlp_avg[0]  # two separate MLPs


def test_criterion_is_the_per_step_weighted_cross_entropy() -> None:
    torch.manual_seed(1)
    model = create_model("icip24", 3, 10, **TINY).train()
    model(torch.rand(2, 10, 16, 16))
    steps = model._steps.detach()
    target = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    loss = model.criterion(target)
    p = steps.softmax(-1)
    expected = torch.stack(
        [-(0.35 * p[0, :, 1].log()).mean(), -(0.35 * p[1, :, 2].log()).mean()]  # w = .3 .35 .35
    )
    torch.testing.assert_close(loss.detach(), expected)
    with pytest.raises(RuntimeError, match="training forward first"):
        model.criterion(target)  # consumed once per forward
    five = create_model("icip24", 5, 10, **TINY)
    assert five.class_weights.tolist() == pytest.approx([0.2] * 5)  # other class sets: 1/K
    mine = create_model("icip24", 2, 10, **TINY, class_weights=(1.0, 3.0))
    assert mine.class_weights.tolist() == [1.0, 3.0]
    with pytest.raises(ConfigError, match="2 class_weights for 3 classes"):
        create_model("icip24", 3, 10, **TINY, class_weights=(1.0, 3.0))


def test_probabilities_are_clipped_at_1e_15_as_the_authors() -> None:
    model = create_model("icip24", 3, 10, **TINY)
    model._steps = torch.tensor([[[100.0, -100.0, 0.0]]])  # p(class 1) ~ e^-200
    loss = model.criterion(torch.tensor([[0.0, 1.0, 0.0]]))
    assert float(loss) == pytest.approx(-0.35 * math.log(1e-15))


def test_l2_penalty_covers_the_regularised_kernels_once_per_forward() -> None:
    model = create_model("icip24", 3, 10, **TINY).train()
    model(torch.rand(1, 10, 16, 16))
    kernels = [model.dense1, model.dense2, model.attention.mlp_max[0], model.attention.mlp_avg[0]]
    expected = 0.01 * sum(float(k.weight.detach().pow(2).sum()) for k in kernels)
    assert float(model.aux_loss().detach()) == pytest.approx(expected, rel=1e-6)
    assert model.aux_loss() is None
    with torch.no_grad():
        model.eval()(torch.rand(1, 10, 16, 16))
    assert model.aux_loss() is None


def test_he_normal_initialisation() -> None:
    torch.manual_seed(2)
    model = create_model("icip24", 3, 10, frame_channels=1, size=64)
    weight = model.dense1.weight.detach()
    std = math.sqrt(2 / weight.shape[1])
    assert float(weight.std()) == pytest.approx(std, rel=0.02)
    assert float(weight.abs().max()) <= 2 * std / 0.87962566 + 1e-6  # truncated at 2 std
    assert not model.dense1.bias.any() and not model.gru.bias_hh_l0.any()


def test_score_is_the_mean_of_step_probabilities_or_one_step() -> None:
    torch.manual_seed(3)
    model = create_model("icip24", 3, 10, **TINY).eval()
    x = torch.rand(2, 10, 16, 16)
    with torch.no_grad():
        steps = model.step_logits(x)
        torch.testing.assert_close(model(x).softmax(-1), steps.softmax(-1).mean(1))
        first = create_model("icip24", 3, 10, **TINY, score_step=0)
        first.load_state_dict(model.state_dict())
        torch.testing.assert_close(first.eval()(x), steps[:, 0])
    with pytest.raises(ConfigError, match="score_step 3 is not one of the 3 steps"):
        create_model("icip24", 3, 10, **TINY, score_step=3)


def test_step_0_sees_frames_0_to_11_by_convolution_and_all_30_by_channel_attention() -> None:
    """What the authors' scored step depends on (the module docstring's claim), by gradients."""
    torch.manual_seed(0)
    model = create_model("icip24", 3, 30, **TINY).double().eval()
    x = torch.rand(1, 30, 16, 16, dtype=torch.double, requires_grad=True)

    def frames_reached() -> list[int]:
        x.grad = None
        model.step_logits(x)[0, 0].sum().backward()
        return x.grad.abs().sum((0, 2, 3)).nonzero().flatten().tolist()

    assert frames_reached() == list(range(30))
    gate = model.attention.channel_map
    model.attention.channel_map = lambda v: gate(v).detach()  # no path through the pooling
    assert frames_reached() == list(range(12))


def test_paper_recipes_are_the_authors() -> None:
    paper = default_recipe("icip24", "paper")
    assert (paper.optimizer, paper.lr, paper.eps) == ("adam", 1e-3, 1e-7)
    assert (paper.batch_size, paper.epochs, paper.weight_decay) == (8, 200, 0.0)
    assert paper.model_kwargs == {"frame_channels": 3, "size": 128, "dropout": 0.5, "score_step": 0}
    assert get_descriptor("icip24").prepare_keys("paper") == {
        "output": "sequence",
        "size": 128,
        "color": True,
        "frames": 30,
    }
    assert default_recipe("icip24", "paper-samm").model_kwargs["dropout"] == 0.3
    assert get_descriptor("icip24").prepare_keys("paper-smic")["frames"] == 10
    config = ExperimentConfig.from_dict(
        with_overrides({}, {"data.root": "x", "recipe.model": "icip24", "recipe.preset": "paper"})
    )
    assert config.recipe.preset == "paper" and config.recipe.epochs == 200
    assert (config.prepare.frames, config.prepare.size, config.prepare.color) == (30, 128, True)
    default = default_recipe("icip24")
    assert default.preset == "default" and default.weight_decay == 0.0
    assert get_descriptor("icip24").prepare_keys()["size"] == default.model_kwargs["size"]
