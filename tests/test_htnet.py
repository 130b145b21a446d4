"""HTNet: the authors' sizes, the hierarchy's shapes, its blocks, and the `paper` recipe."""

from __future__ import annotations

import pytest
import torch

from merkit.errors import ConfigError
from merkit.models import create_model, get_descriptor
from merkit.models.htnet import (
    HTNet,
    HTNetConfig,
    PatchEmbed,
    aggregate,
    from_blocks,
    to_blocks,
)
from merkit.models.registry import InputSpec
from merkit.training.config import ExperimentConfig
from merkit.training.recipe import default_recipe, recipe_presets

TINY = {"dim": 6, "heads": 3, "depths": (1, 1, 2)}

pytestmark = pytest.mark.usefixtures("one_thread")


def test_registered_on_region_mosaics() -> None:
    entry = get_descriptor("htnet")
    assert entry.input == InputSpec("regions", 3, (28, 28))
    assert not entry.groupable


def test_authors_sizes() -> None:
    """main_HTNet.py:222-231: dim 256, heads 3, (2, 2, 10) layers, dim_head 85: 139.6 M weights."""
    with torch.device("meta"):
        model = HTNet()
    assert model.config == HTNetConfig()
    assert sum(p.numel() for p in model.parameters()) == 139_582_982
    widths = [t.layers[0].attn_norm.normalized_shape[0] for t in model.levels]
    heads = [t.layers[0].attn.heads for t in model.levels]
    assert widths == [256, 512, 1024] and heads == [3, 6, 12]
    assert [len(t.layers) for t in model.levels] == [2, 2, 10]
    assert {t.layers[0].attn.dim_head for t in model.levels} == {85}
    assert model.levels[0].layers[0].attn.qkv.out_features == 3 * 255  # 3 x 85 inner
    assert model.levels[2].layers[0].ff[0].out_features == 4 * 1024
    assert model.embed.proj.in_channels == 7 * 7 * 3
    assert [t.position.shape for t in model.levels] == [(1,), (1,), (1,)]


def test_output_and_gradients() -> None:
    model = create_model("htnet", 3, **TINY)
    x = torch.rand(2, 3, 28, 28, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 3)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())


def test_hierarchy_shapes() -> None:
    """(dim, 4, 4) -> aggregate -> (2 dim, 2, 2) -> aggregate -> (4 dim, 1, 1)."""
    model = HTNet(3, 3, **TINY)
    shapes = []
    for module in (model.embed, *model.levels, *model.aggregates):
        module.register_forward_hook(lambda m, i, o: shapes.append((type(m).__name__, o.shape)))
    model(torch.rand(2, 3, 28, 28))
    assert shapes == [
        ("PatchEmbed", (2, 6, 4, 4)),
        ("Transformer", (32, 6, 1, 1)),  # 16 blocks of one position per sample
        ("Sequential", (2, 12, 2, 2)),
        ("Transformer", (8, 12, 1, 1)),
        ("Sequential", (2, 24, 1, 1)),
        ("Transformer", (2, 24, 1, 1)),
    ]
    assert aggregate(5, 10)(torch.rand(1, 5, 7, 7)).shape == (1, 10, 4, 4)


def test_blocks_and_patches_follow_the_authors_layout() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    blocks = to_blocks(x, 2)
    assert blocks.shape == (8, 3, 2, 2)
    torch.testing.assert_close(blocks[1], x[0, :, :2, 2:])  # sample 0, block row 0, column 1
    torch.testing.assert_close(blocks[6], x[1, :, 2:, :2])
    torch.testing.assert_close(from_blocks(blocks, 2), x)
    embed = PatchEmbed(3, 2, 12)
    torch.nn.init.eye_(embed.proj.weight.view(12, 12))
    torch.nn.init.zeros_(embed.proj.bias)
    patch = embed(x)[0, :, 0, 1]  # the patch at rows 0-1, columns 2-3, flattened (row, col, c)
    expected = torch.stack(
        [x[0, c, r, 2 + k] for r in range(2) for k in range(2) for c in range(3)]
    )
    torch.testing.assert_close(patch, expected)


def test_bigger_blocks_attend_across_positions() -> None:
    """At 56x56 the blocks hold four positions and attention mixes them."""
    model = HTNet(3, 3, image_size=56, **TINY).eval()
    x = torch.rand(1, 3, 56, 56)
    assert model(x).shape == (1, 3)
    with pytest.raises(ValueError, match="multiple of patch"):
        HTNet(3, 3, image_size=30)


def test_input_is_scaled_to_the_authors_range() -> None:
    torch.manual_seed(0)
    model = HTNet(3, 3, **TINY).eval()
    unscaled = HTNet(3, 3, **{**TINY, "input_scale": 1.0}).eval()
    unscaled.load_state_dict(model.state_dict())
    x = torch.rand(2, 3, 28, 28)
    torch.testing.assert_close(model(x), unscaled(x * 255))


def test_paper_recipe_is_the_authors() -> None:
    paper = default_recipe("htnet", "paper")
    assert (paper.optimizer, paper.lr, paper.weight_decay) == ("adam", 5e-5, 0.0)
    assert (paper.batch_size, paper.epochs, paper.shuffle) == (256, 800, False)
    assert paper.schedule == "constant" and paper.warmup_epochs == 0
    assert (paper.label_smoothing, paper.class_weighted) == (0.0, False)
    assert not paper.augment.hflip and paper.augment.max_shift == 0 and paper.seed_members == 1
    assert paper.model_kwargs == {}  # HTNetConfig's defaults: the authors' network
    assert recipe_presets("htnet") == ["default", "paper"]
    default = default_recipe("htnet")
    assert default.model_kwargs and default.epochs < 800


def test_a_config_selects_a_preset_and_overrides_it() -> None:
    config = ExperimentConfig.from_dict(
        {"data": {"root": "x"}, "recipe": {"model": "htnet", "preset": "paper", "epochs": 3}}
    )
    assert (config.recipe.lr, config.recipe.epochs, config.recipe.batch_size) == (5e-5, 3, 256)
    assert config.prepare.output == "regions"
    again = ExperimentConfig.from_dict(config.to_dict())  # a saved config reads back the same
    assert again.identity() == config.identity()
    with pytest.raises(ConfigError, match="no recipe preset 'papers'; its presets: default, paper"):
        ExperimentConfig.from_dict({"recipe": {"model": "htnet", "preset": "papers"}})
    with pytest.raises(ConfigError, match="'cabm' has no recipe preset 'paper'"):
        ExperimentConfig.from_dict({"recipe": {"model": "cabm", "preset": "paper"}})


@pytest.mark.slow
def test_exports_to_onnx_with_parity(tmp_path) -> None:
    from inference_fixtures import make_meta
    from merkit.inference.export import export_onnx
    from merkit.inference.predictor import OnnxBackend
    from merkit.preprocess.pipeline import PrepareConfig

    meta = make_meta("htnet", TINY, PrepareConfig(output="regions"))
    assert meta.input_spec["kind"] == "regions"
    torch.manual_seed(0)
    net = create_model("htnet", 3, 3, **meta.model_kwargs).eval()
    path = export_onnx(net, meta, tmp_path / "htnet.onnx")
    x = torch.rand(3, 3, 28, 28)
    with torch.no_grad():
        expected = net(x).softmax(-1).numpy()
    assert abs(OnnxBackend(path).probabilities(x.numpy()) - expected).max() < 1e-4
