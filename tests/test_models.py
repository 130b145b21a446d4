"""Models: registry, output shapes, gradients, grouped copies, and that each can learn."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from merkit.errors import ConfigError
from merkit.models import (
    InputSpec,
    Preset,
    create_model,
    get_descriptor,
    list_models,
    register_model,
    stack_models,
    unstack_model,
)
from merkit.models import registry as registry_module
from merkit.models.blocks import CBAM, DepthwiseConv2d, GroupedLinear
from merkit.models.cabm import CABMFMER, CABMConfig, center_motion

FLOW_MODELS = ["cabm", "ststnet", "offapexnet"]
SMALL = {"cabm": {"dim": 16, "depth": 2, "patch": 4}, "ststnet": {}, "offapexnet": {"hidden": 64}}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register test models in a copy of the registry, dropped after the test."""
    monkeypatch.setattr(registry_module, "_MODELS", dict(registry_module._MODELS))


def test_registry_lists_the_flow_models() -> None:
    assert set(FLOW_MODELS) <= set(list_models())
    assert set(FLOW_MODELS) <= set(list_models(kind="maps"))
    assert list_models(kind="sequence") == [] or "cabm" not in list_models(kind="sequence")
    for name in FLOW_MODELS:
        entry = get_descriptor(name)
        assert entry.input == InputSpec("maps", 3, (28, 28))
        assert entry.groupable
        assert entry.summary and "default" in entry.presets


def test_unknown_model_and_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown model 'nope'.*cabm"):
        create_model("nope")
    with pytest.raises(ConfigError, match="bad options for model 'cabm'"):
        create_model("cabm", not_an_option=1)


def test_register_model_declares_input_and_refuses_duplicates(scratch_registry: None) -> None:
    PRESETS = {"default": Preset()}  # noqa: N806

    @register_model(
        "tiny-seq",
        summary="a tiny test model",
        input=InputSpec("sequence", 1, (64, 64), frames=8),
        presets=PRESETS,
    )
    def tiny(num_classes: int = 3, in_chans: int = 1) -> nn.Module:
        """A tiny test model."""
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    assert "tiny-seq" in list_models(kind="sequence")
    assert get_descriptor("tiny-seq").input.frames == 8
    assert not get_descriptor("tiny-seq").groupable
    with pytest.raises(ConfigError, match="cannot be built grouped"):
        create_model("tiny-seq", groups=2)
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny-seq", summary="again", input=InputSpec(), presets=PRESETS)(tiny)
    with pytest.raises(ValueError, match="input kind"):
        InputSpec("video")


@pytest.mark.parametrize("name", FLOW_MODELS)
@pytest.mark.parametrize("size", [28, 32])
def test_output_shapes(name: str, size: int) -> None:
    model = create_model(name, num_classes=5, **SMALL[name]).eval()
    assert model(torch.rand(2, 3, size, size)).shape == (2, 5)
    grouped = create_model(name, num_classes=5, groups=3, **SMALL[name]).eval()
    assert grouped(torch.rand(2, 9, size, size)).shape == (2, 15)


@pytest.mark.parametrize("name", FLOW_MODELS)
def test_gradients_reach_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, **SMALL[name]).train()
    loss = model(torch.rand(4, 3, 28, 28)).logsumexp(-1).sum()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", FLOW_MODELS)
def test_grouped_model_equals_its_stacked_copies(name: str) -> None:
    torch.manual_seed(0)
    singles = [create_model(name, num_classes=3, **SMALL[name]).eval() for _ in range(3)]
    grouped = stack_models(singles, create_model(name, num_classes=3, groups=3, **SMALL[name]))
    grouped.eval()
    x = [torch.rand(4, 3, 28, 28) for _ in range(3)]  # a different batch per copy
    out = grouped(torch.cat(x, dim=1)).view(4, 3, 3)
    for g, single in enumerate(singles):
        torch.testing.assert_close(out[:, g], single(x[g]), atol=1e-5, rtol=1e-4)
        back = unstack_model(grouped, g, create_model(name, num_classes=3, **SMALL[name]), 3)
        back.eval()
        torch.testing.assert_close(back(x[g]), single(x[g]))


def _separable(n: int = 16, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Random maps whose class is written as a bright blob in a class-specific place."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    x = torch.rand(n, 3, 28, 28, generator=gen) * 0.3
    for i, label in enumerate(y.tolist()):
        x[i, :, 4 + 8 * label : 10 + 8 * label, 4:24] += 0.7
    return x, y


@pytest.mark.parametrize("name", FLOW_MODELS)
def test_each_model_overfits_a_small_separable_set(name: str) -> None:
    torch.manual_seed(0)
    x, y = _separable()
    model = create_model(name, num_classes=3, dropout=0.0, **SMALL[name])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        opt.zero_grad()
        nn.functional.cross_entropy(model.train()(x), y).backward()
        opt.step()
    accuracy = (model.eval()(x).argmax(-1) == y).float().mean().item()
    assert accuracy == 1.0


def test_cabm_config_and_attention_switch() -> None:
    with_att = create_model("cabm", dim=16, depth=2, patch=2)
    without = create_model("cabm", config=CABMConfig(dim=16, depth=2, patch=2, attention=False))
    assert isinstance(with_att, CABMFMER) and isinstance(with_att.attention, CBAM)
    assert isinstance(without.attention, nn.Identity)
    assert with_att.config.dim == 16 and len(with_att.mixer) == 2
    feats = with_att.eval().forward_features(torch.rand(1, 3, 28, 28))
    assert feats.shape == (1, 16, 14, 14)
    default = create_model("cabm").config  # the shipped recipe's shape
    assert (default.dim, default.depth, default.patch) == (32, 4, 4)


@pytest.mark.parametrize(("size", "kernel"), [(7, 7), (5, 3), (9, 5), (14, 7)])
def test_depthwise_matmul_path_equals_conv2d(size: int, kernel: int) -> None:
    torch.manual_seed(0)
    conv = DepthwiseConv2d(6, kernel)
    x = torch.rand(3, 6, size, size + 1, requires_grad=True)
    out = conv(x)
    ref = nn.functional.conv2d(x, conv.weight, conv.bias, padding=kernel // 2, groups=6)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    (grad_x, grad_w) = torch.autograd.grad(out.square().sum(), (x, conv.weight))
    (ref_x, ref_w) = torch.autograd.grad(ref.square().sum(), (x, conv.weight))
    torch.testing.assert_close(grad_x, ref_x, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grad_w, ref_w, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(conv.eval()(x), ref, atol=1e-5, rtol=1e-4)  # native path
    with pytest.raises(ValueError, match="odd kernel"):
        DepthwiseConv2d(6, 4)


def test_attention_blocks_keep_shape_and_group() -> None:
    x = torch.rand(2, 2 * 8, 5, 5)
    assert CBAM(8, reduction=2, groups=2)(x).shape == x.shape
    linear = GroupedLinear(8, 3, groups=2)
    out = linear(torch.rand(4, 16))
    assert out.shape == (4, 6)


def test_center_motion_zeroes_the_median_flow_of_every_copy() -> None:
    x = torch.rand(2, 6, 9, 9)  # two copies of (u, v, strain)
    centered = center_motion(x, in_chans=3)
    medians = centered.flatten(2).median(dim=2).values
    torch.testing.assert_close(medians[:, [0, 1, 3, 4]], torch.zeros(2, 4))
    torch.testing.assert_close(centered[:, [2, 5]], x[:, [2, 5]])
