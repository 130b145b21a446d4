"""MOL against its authors' code, fact by fact: each layer checked against an explicit loop or
the sheet's numbers (SEED_SYSTEMS.md section 2), its losses, its crops and its recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from merkit.errors import ConfigError
from merkit.models import create_model, get_descriptor
from merkit.models.f5c import ChannelCorrespondenceConv, GlobalAxisMixer, circular_conv
from merkit.models.flownetc import FlowNetC, correlation
from merkit.models.mol import (
    Classifier3d,
    ConvStack,
    LandmarkHead,
    conv_stack_size,
    flow_loss,
    landmark_loss,
    pupil_distance,
)
from merkit.training.config import ExperimentConfig
from merkit.training.recipe import default_recipe

SMALL = {"crop": 32, "dim": 32, "flow_width": 0.0625}


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def test_circular_conv_matches_an_explicit_loop() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 4)
    for axis, length in ((2, 5), (3, 4)):
        shape = (3, 1, 7, 1) if axis == 2 else (3, 1, 1, 7)  # a 7-tap meta-kernel, cropped
        kernel, bias = torch.randn(shape), torch.randn(3)
        out = circular_conv(x, kernel, bias, axis)
        taps = kernel.flatten(1)[:, :length]  # (C, L): the first L taps
        expected = torch.empty_like(x)
        for c in range(3):
            for i in range(length):
                total = bias[c].clone()
                for k in range(length):
                    j = (i + k) % length  # wraps around: rows 0..L-2 appended
                    total = total + taps[c, k] * (x[:, c, j] if axis == 2 else x[:, c, :, j])
                if axis == 2:
                    expected[:, c, i] = total
                else:
                    expected[:, c, :, i] = total
        torch.testing.assert_close(out, expected)


def test_fcc_half_is_encoding_norm_h_then_encoding_w_plus_the_raw_input() -> None:
    torch.manual_seed(1)
    mixer = GlobalAxisMixer(2, meta=6, first=2).eval()  # half A: H first
    mixer.norm.running_mean.uniform_(-1, 1)
    mixer.norm.running_var.uniform_(0.5, 2)
    x = torch.randn(1, 2, 4, 4)
    norm = mixer.norm
    pe1 = mixer.pe1[:, :, :4]  # (1, C, 4, 1): along H, broadcast over W
    y = (x + pe1 - norm.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
        norm.running_var.view(1, -1, 1, 1) + norm.eps
    ) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)
    y = circular_conv(y, mixer.kernel1, mixer.bias1, 2) + mixer.pe2[:, :, :, :4]
    expected = x + circular_conv(y, mixer.kernel2, mixer.bias2, 3)
    with torch.no_grad():
        torch.testing.assert_close(mixer(x), expected)
    assert mixer.kernel1.shape == (2, 1, 6, 1) and mixer.kernel2.shape == (2, 1, 1, 6)
    half_b = GlobalAxisMixer(2, meta=6, first=3)
    assert half_b.pe1.shape == (1, 2, 1, 6) and half_b.kernel2.shape == (2, 1, 6, 1)


def test_ccc_matches_the_authors_loop_over_channels_and_neighbours() -> None:
    torch.manual_seed(2)
    ccc = ChannelCorrespondenceConv(positions=9, neighbours=3)
    x = torch.randn(2, 4, 3, 3)
    out = ccc(x)
    nodes = x.flatten(2)  # (B, C, P)
    w1, b1 = ccc.self_map.weight, ccc.self_map.bias
    w2, b2 = ccc.edge_map.weight, ccc.edge_map.bias
    expected = torch.empty_like(nodes)
    for b in range(2):
        vectors = nodes[b].T  # (P, C): a position is described by its channels
        unit = vectors / vectors.norm(dim=1, keepdim=True)
        order = (unit @ unit.T).argsort(dim=1, descending=True)[:, :3]  # self first
        assert torch.equal(order[:, 0], torch.arange(9))
        for c in range(4):
            x_c = nodes[b, c]
            edges = []
            for j in range(3):
                d = x_c[order[:, j]] - x_c  # neighbour minus self, per position
                edges.append(torch.relu(w1 @ x_c + b1 + w2 @ (d - x_c) + b2))
            expected[b, c] = torch.stack(edges).amax(0)
    torch.testing.assert_close(out, expected.view_as(x))


def test_correlation_matches_a_naive_loop() -> None:
    torch.manual_seed(3)
    a, b = torch.randn(2, 3, 5, 6), torch.randn(2, 3, 5, 6)
    patch, dilation = 5, 2
    out = correlation(a, b, patch, dilation)
    assert out.shape == (2, 25, 5, 6)
    expected = torch.zeros_like(out)
    r = patch // 2
    for i in range(patch):
        for j in range(patch):
            for y in range(5):
                for x in range(6):
                    ty, tx = y + (i - r) * dilation, x + (j - r) * dilation
                    if 0 <= ty < 5 and 0 <= tx < 6:
                        expected[:, i * patch + j, y, x] = (a[:, :, y, x] * b[:, :, ty, tx]).sum(1)
    torch.testing.assert_close(out, expected)
    assert correlation(a, b, 21, 2).shape == (2, 441, 5, 6)  # the authors' 441 channels


def test_the_authors_sizes_at_128_pixels() -> None:
    """Conv stack 128 -> 16 (8, 32, 64, 128 channels, no activations); classifier flatten 2560;
    landmark head 6272 -> 512 -> 136; FlowNetC conv3_1 takes 32 + 441 + 256 = 729 channels."""
    stack = ConvStack(128)
    assert [m.out_channels for m in stack] == [8, 32, 64, 128]
    assert all(isinstance(m, nn.Conv2d) for m in stack)  # nothing between the convolutions
    assert stack(torch.zeros(1, 1, 128, 128)).shape == (1, 128, 16, 16)
    assert conv_stack_size(128) == 16 and conv_stack_size(56) == 7
    classifier = Classifier3d(128, 16, 14, 3, 0.5)
    assert classifier.conv.kernel_size == (2, 2, 5) and classifier.conv.stride == (2, 2, 1)
    assert classifier.fc1.in_features == 2560 and classifier.fc1.out_features == 256
    head = LandmarkHead(128, 16)
    assert head[3].in_features == 6272 and head[3].out_features == 512
    assert head[5].out_features == 136
    flownet = FlowNetC(128, 1.0, 21, 2)
    assert flownet.conv3_1[0].in_channels == 729 and flownet.conv6_1[0].out_channels == 1024
    assert [d[0].in_channels for d in flownet.deconvs] == [1024, 1026, 770, 386, 258, 130]
    assert flownet.predict_full.in_channels == 35
    with torch.no_grad():
        flow = flownet(
            torch.zeros(1, 1, 128, 128), torch.zeros(1, 1, 128, 128), torch.zeros(1, 256, 16, 16)
        )
    assert flow.shape == (1, 2, 128, 128)


def test_losses_are_the_authors() -> None:
    pred, target = torch.zeros(2, 7, 2, 4, 4), torch.ones(2, 7, 2, 4, 4)
    assert float(flow_loss(pred, target)) == pytest.approx(1 / 7)  # mean, then / 7 pairs
    points = torch.zeros(1, 1, 68, 2)
    points[..., 36:42, 0] = 10.0  # eye centres 30 px apart
    points[..., 42:48, 0] = 40.0
    assert float(pupil_distance(points)) == pytest.approx(30.0)
    shifted = points.clone()
    shifted[..., 0, 0] += 6.0  # one coordinate 6 px off
    assert float(landmark_loss(shifted, points)) == pytest.approx(6 / 30 / 68)
    two = torch.cat([torch.cat([shifted, shifted], 1)] * 2)  # 2 samples x 2 pairs
    assert float(
        landmark_loss(two, torch.cat([torch.cat([points, points], 1)] * 2))
    ) == pytest.approx(4 * 6 / 30 / (2 * 68))


def test_total_loss_weighs_flow_10_and_landmarks_half() -> None:
    torch.manual_seed(4)
    model = create_model("mol", 3, 16, **SMALL).train()
    x = torch.rand(2, 16, 36, 36)
    torch.manual_seed(5)
    model(x)
    aux = model.aux_loss().detach()
    torch.manual_seed(5)  # the same crops again
    with torch.no_grad():
        _, flow, marks, offsets = model.forward_heads(x)
        flow_target, mark_target = model.targets(x, offsets)
    assert float(aux) == pytest.approx(
        10 * float(flow_loss(flow, flow_target)) + 0.5 * float(landmark_loss(marks, mark_target)),
        rel=1e-5,
    )
    assert model.aux_loss() is None


def test_training_crops_move_frames_flow_and_landmarks_together() -> None:
    model = create_model("mol", 3, 16, **SMALL)
    x = torch.zeros(1, 4, 4, 36, 36)
    x[:, :, 1] = torch.arange(36.0).view(1, 1, 36)  # u = the column index
    x[:, :, 3].view(1, 4, -1)[..., :136] = torch.arange(136.0)  # landmark coordinates
    offsets = torch.tensor([[3, 1]])  # row 3, column 1
    flow, points = model.targets(x.flatten(1, 2), offsets)
    assert flow.shape == (1, 3, 2, 32, 32) and float(flow[0, 0, 0, 0, 0]) == 1.0
    assert float(points[0, 0, 0, 0]) == 0.0 - 1 and float(points[0, 0, 0, 1]) == 1.0 - 3  # x - col
    torch.manual_seed(0)
    drawn = model.train().crop_offsets(x.flatten(1, 2).expand(64, -1, -1, -1))
    assert drawn.min() == 0 and drawn.max() == 4  # uniform over [0, 36 - 32]
    assert model.eval().crop_offsets(x.flatten(1, 2)).tolist() == [
        [2, 2]
    ]  # the centre: (8, 8) of 144
    with pytest.raises(ValueError, match="at least its crop"):
        model.crop_offsets(torch.zeros(1, 16, 30, 30))


def test_heads_output_pixels_of_the_crop_and_eval_uses_no_targets() -> None:
    torch.manual_seed(5)
    model = create_model("mol", 4, 20, **SMALL)
    x = torch.rand(2, 20, 40, 40)
    logits, flow, marks, offsets = model.eval().forward_heads(x)
    assert (
        logits.shape == (2, 4) and flow.shape == (2, 4, 2, 32, 32) and marks.shape == (2, 4, 68, 2)
    )
    assert offsets.tolist() == [[4, 4], [4, 4]]
    with torch.no_grad():
        torch.testing.assert_close(model(x), logits)


def test_sizes_the_network_cannot_take_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least 4 frames"):
        create_model("mol", 3, 12, **SMALL)
    with pytest.raises(ConfigError, match="FCC needs"):
        create_model("mol", 3, 32, crop=16)


def test_paper_recipe_is_the_authors() -> None:
    recipe = default_recipe("mol", "paper")
    assert (recipe.optimizer, recipe.lr, recipe.weight_decay) == ("adamw", 1e-4, 1e-3)
    assert (recipe.batch_size, recipe.max_steps, recipe.schedule) == (32, 1001, "constant")
    assert recipe.model_kwargs == {} and not recipe.augment.hflip and recipe.augment.max_shift == 0
    assert get_descriptor("mol").prepare_keys("paper") == {
        "output": "sequence",
        "size": 144,
        "color": False,
        "frames": 8,
    }
    model = create_model("mol", 3, 32)  # the authors' network is the model's default
    assert model.config.crop == 128 and model.config.flow_width == 1.0
    assert (model.config.flow_weight, model.config.landmark_weight) == (10.0, 0.5)
    default = default_recipe("mol")
    assert default.model_kwargs["crop"] < 128 and get_descriptor("mol").prepare_keys()["size"] < 144


def test_config_refuses_augmenting_packed_targets() -> None:
    with pytest.raises(ConfigError, match="would corrupt"):
        ExperimentConfig.from_dict(
            {"data": {"root": "x"}, "recipe": {"model": "mol", "augment": {"max_shift": 2}}}
        )


def test_eval_is_deterministic_and_batch_independent() -> None:
    torch.manual_seed(6)
    model = create_model("mol", 3, 16, **SMALL).eval()
    x = torch.from_numpy(np.random.default_rng(0).random((3, 16, 36, 36), dtype=np.float32))
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:1], model(x[:1]), atol=1e-5, rtol=1e-5)
