"""ConVAT, C3D-GRU, ICIP 2024 and MOL: shapes, gradients, overfitting, auxiliary losses, input
checks, and MOL's packed targets (the faithful models' own facts: test_icip24.py, test_mol.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from merkit.errors import ConfigError, DataLayoutError
from merkit.models import c3dgru, convat, create_model, get_descriptor, icip24, mol  # noqa: F401
from merkit.models.inputs import check_input, model_input
from merkit.models.layers import ChannelAttention3d, frames_in, unstack_frames
from merkit.preprocess.targets import (
    PACKED_CHANNELS,
    consecutive_flow,
    frame_landmarks,
    landmark_box,
    landmark_plane,
    pack_sequence,
    pack_sequences,
    plane_landmarks,
)
from merkit.synthetic.faces import random_face, render_face
from merkit.training.engine import fit_predict
from merkit.training.recipe import AugmentConfig, Recipe

# Small configs: each trains in a second or two on one CPU core.
SMALL = {
    "convat": {"dim": 32, "width": 16, "depth": 1, "heads": 2, "latent": 16, "dropout": 0.0},
    "c3dgru": {"widths": (4, 8), "pool_grid": 2, "hidden": 32, "dropout": 0.0},
    "icip24": {
        "frame_channels": 1,
        "size": 32,
        "filters": 4,
        "reduction": 2,
        "hidden": 16,
        "dropout": 0.0,
    },
    "mol": {"crop": 32, "dim": 32, "flow_width": 0.0625, "dropout": 0.0},
}


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def aux_of(model: torch.nn.Module) -> torch.Tensor | None:
    aux = getattr(model, "aux_loss", None)
    return aux() if callable(aux) else None


def packed_clips(n: int, frames: int, size: int, seed: int = 0) -> torch.Tensor:
    """(n, frames * 4, size, size) random clips with random packed flow / landmark targets
    (landmarks anywhere in the frame)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, frames, len(PACKED_CHANNELS), size, size, generator=g)
    x[:, :, 1:3] = x[:, :, 1:3] * 2 - 1
    x[:, :, 3] *= size
    return x.flatten(1, 2)


# ---- shapes and gradients ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shape", "kwargs"),
    [
        ("convat", (3, 28, 28), {}),
        ("convat", (3, 64, 64), {}),
        ("convat", (1, 64, 64), {}),  # grey apex image
        ("convat", (1, 14, 20), {"pool": "mean"}),
        ("c3dgru", (8, 64, 64), {}),
        ("c3dgru", (4 * 3, 32, 32), {"frame_channels": 3}),  # 4 RGB frames
        ("c3dgru", (2, 28, 28), {}),
        ("icip24", (10, 32, 32), SMALL["icip24"]),
        (
            "icip24",
            (4 * 3, 16, 16),
            {"size": 16, "filters": 4, "reduction": 2, "hidden": 8},
        ),  # 4 RGB frames
        ("mol", (8 * 4, 72, 72), {"crop": 64, "flow_width": 0.0625}),
        ("mol", (4 * 4, 40, 40), SMALL["mol"]),
    ],
)
def test_output_shapes(name: str, shape: tuple[int, ...], kwargs: dict) -> None:
    model = create_model(name, 5, shape[0], **kwargs)
    x = torch.rand(3, *shape)
    assert model.train()(x).shape == (3, 5)
    aux_of(model)
    with torch.no_grad():
        assert model.eval()(x).shape == (3, 5)


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("convat", (3, 28, 28)),
        ("c3dgru", (6, 32, 32)),
        ("icip24", (6, 32, 32)),
        ("mol", (16, 36, 36)),
    ],
)
def test_gradients_reach_every_parameter(name: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = create_model(name, 4, shape[0], **SMALL[name]).train()
    x = torch.rand(4, *shape) if name != "mol" else packed_clips(4, 4, 36)
    loss = F.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    aux = aux_of(model)
    if name in ("convat", "icip24", "mol"):
        assert aux is not None and aux.requires_grad and float(aux.detach()) > 0
    (loss + (aux if aux is not None else 0)).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert dead == []


def test_eval_is_deterministic_and_has_no_aux() -> None:
    model = create_model("convat", 3, 3).eval()
    x = torch.rand(2, 3, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    assert model.aux_loss() is None
    mol_model = create_model("mol", 3, 16, **SMALL["mol"]).eval()
    with torch.no_grad():
        mol_model(packed_clips(2, 4, 36))
    assert mol_model.aux_loss() is None


# ---- learning -----------------------------------------------------------------------------------


def overfit_steps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """Train with Adam on the whole batch; the final train accuracy in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        model.train()
        loss = F.cross_entropy(model(x), y)
        aux = aux_of(model)
        if aux is not None:
            loss = loss + aux
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((model.eval()(x).argmax(1) == y).float().mean())


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("convat", (3, 28, 28)),
        ("c3dgru", (6, 32, 32)),
        ("icip24", (6, 32, 32)),
        ("mol", (16, 36, 36)),
    ],
)
def test_overfits_sixteen_samples(name: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    y = torch.arange(16) % 4
    x = torch.rand(16, *shape) if name != "mol" else packed_clips(16, 4, 36)
    # MOL's heads chase random targets here: its classifier path alone must fit.
    quiet = {"flow_weight": 0.0, "landmark_weight": 0.0} if name == "mol" else {}
    model = create_model(name, 4, shape[0], **SMALL[name], **quiet)
    assert overfit_steps(model, x, y, 60) == 1.0


def test_convat_kl_term_is_weighted_and_shrinks() -> None:
    torch.manual_seed(0)
    model = create_model("convat", 3, 3, kl_weight=1.0, **SMALL["convat"])
    x = torch.rand(8, 3, 28, 28)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    kls = []
    for _ in range(15):
        model.train()(x)
        kl = model.aux_loss()
        assert model.aux_loss() is None  # returned once per forward
        kls.append(float(kl.detach()))
        opt.zero_grad()
        kl.backward()
        opt.step()
    assert kls[0] > 0 and kls[-1] < 0.5 * kls[0]
    half = create_model("convat", 3, 3, kl_weight=0.5, **SMALL["convat"])
    half.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    model.train()(x)
    torch.manual_seed(1)
    half.train()(x)
    assert torch.allclose(half.aux_loss(), 0.5 * model.aux_loss())


def mol_head_losses(model: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    """MOL's flow and landmark losses on `x` at the same random crops every time."""
    torch.manual_seed(9)
    with torch.no_grad():
        _, flow, marks, offsets = model.train().forward_heads(x)
        flow_target, mark_target = model.targets(x, offsets)
    return {
        "flow": float(mol.flow_loss(flow, flow_target)),
        "landmarks": float(mol.landmark_loss(marks, mark_target)),
    }


def test_mol_flow_and_landmark_heads_learn() -> None:
    torch.manual_seed(0)
    x = packed_clips(8, 4, 36)
    y = torch.arange(8) % 2
    model = create_model("mol", 2, x.shape[1], **SMALL["mol"])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    before = mol_head_losses(model, x)
    for _ in range(25):
        loss = F.cross_entropy(model.train()(x), y) + model.aux_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = mol_head_losses(model, x)
    for key in ("flow", "landmarks"):
        assert after[key] < 0.7 * before[key], key


def test_mol_targets_are_read_only_from_target_channels() -> None:
    model = create_model("mol", 3, 16, **SMALL["mol"]).eval()
    x = packed_clips(2, 4, 36)
    other = x.clone()
    frames = unstack_frames(other, 4)
    frames[:, :, 1:] = 0  # targets zeroed: the prediction must not change
    with torch.no_grad():
        assert torch.allclose(model(x), model(other))


def test_models_train_through_the_engine() -> None:
    """Non-groupable models run one fold at a time through `fit_predict`, aux loss included."""
    rng = np.random.default_rng(0)
    y = np.arange(12) % 3
    folds = [(np.arange(6, 12), np.arange(6)), (np.arange(6), np.arange(6, 12))]
    flow = rng.random((12, 3, 28, 28), dtype=np.float32)
    seq = model_input(pack_sequences_like(rng, 12, 4, 36))
    grey = rng.random((12, 10, 32, 32), dtype=np.float32)
    still = AugmentConfig(hflip=False, max_shift=0)
    for name, x in (("convat", flow), ("icip24", grey), ("mol", seq)):
        recipe = Recipe(model=name, model_kwargs=SMALL[name], epochs=2, batch_size=4, augment=still)
        probs = fit_predict(recipe, x, y, folds, 3)
        assert [p.shape for p in probs] == [(6, 3), (6, 3)]
        assert np.allclose(np.concatenate(probs).sum(1), 1, atol=1e-5)


def pack_sequences_like(rng: np.random.Generator, n: int, frames: int, size: int) -> np.ndarray:
    """(n, frames, 4, size, size) arrays in the packed layout, without running dlib."""
    return rng.random((n, frames, len(PACKED_CHANNELS), size, size), dtype=np.float32)


# ---- input declaration ---------------------------------------------------------------------------


def test_input_specs_and_default_channels() -> None:
    assert get_descriptor("convat").input.kind == "maps"
    assert get_descriptor("c3dgru").input.in_chans == 8
    assert get_descriptor("mol").input.in_chans == 32
    assert get_descriptor("mol").input.channels == len(PACKED_CHANNELS)
    assert get_descriptor("icip24").input.in_chans == 30 * 3


def test_check_input_accepts_matching_data() -> None:
    assert check_input("convat", (10, 3, 28, 28), "maps") == (10, 3, 28, 28)
    assert check_input("convat", (10, 1, 64, 64), "apex") == (10, 1, 64, 64)
    assert check_input("c3dgru", (10, 8, 1, 64, 64), "sequence") == (10, 8, 64, 64)
    assert check_input("mol", (4, 5, 4, 40, 40), crop=32) == (4, 20, 40, 40)
    assert check_input("icip24", (4, 10, 1, 32, 32), **SMALL["icip24"]) == (4, 10, 32, 32)
    assert check_input("c3dgru", (4, 4, 3, 32, 32), frame_channels=3) == (4, 12, 32, 32)


@pytest.mark.parametrize(
    ("model", "shape", "kind", "message"),
    [
        ("c3dgru", (10, 3, 28, 28), "maps", "takes frame sequences"),
        ("convat", (10, 8, 1, 64, 64), "sequence", "takes motion maps or apex images"),
        ("convat", (10, 8, 1, 64, 64), None, "takes motion maps or apex images"),
        ("mol", (10, 8, 1, 64, 64), "sequence", "pack_sequences"),
        ("c3dgru", (10, 1, 1, 64, 64), "sequence", "at least 2 frames"),
        ("c3dgru", (10, 8, 3, 64, 64), "sequence", "1 channel(s) per frame"),
        ("convat", (10, 28, 28), "maps", "expected (N, C, H, W)"),
        ("nope", (10, 3, 28, 28), "maps", "unknown model"),
    ],
)
def test_check_input_errors(
    model: str, shape: tuple[int, ...], kind: str | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_input(model, shape, kind)


def test_check_input_reports_a_model_that_cannot_run() -> None:
    with pytest.raises(ConfigError, match="multiple of its 3 heads"):
        check_input("convat", (2, 3, 28, 28), "maps", heads=3, dim=64)
    with pytest.raises(ConfigError, match="cannot run on maps data"):
        check_input("cabm", (2, 3, 1, 1), "maps")


def test_model_input_flattens_frame_major() -> None:
    x = np.arange(2 * 3 * 2 * 4 * 4, dtype=np.float32).reshape(2, 3, 2, 4, 4)
    flat = model_input(x)
    assert flat.shape == (2, 6, 4, 4)
    assert np.array_equal(flat[:, 2:4], x[:, 1])
    back = unstack_frames(torch.from_numpy(flat), 2)
    assert torch.equal(back, torch.from_numpy(x))
    assert model_input(flat) is flat


def test_frames_in_and_channel_attention_3d() -> None:
    assert frames_in(12, 4, "mol") == 3
    with pytest.raises(ConfigError, match="got 10 input channels"):
        frames_in(10, 4, "mol")
    cam = ChannelAttention3d(8, reduction=2)
    x = torch.rand(2, 8, 3, 5, 5)
    out = cam(x)
    gate = out / x  # one gate per (sample, channel), shared over T, H and W
    assert torch.allclose(gate, gate[:, :, :1, :1, :1].expand_as(gate), atol=1e-5)


# ---- MOL's packed targets ------------------------------------------------------------------------


def test_consecutive_flow_follows_a_translation() -> None:
    rng = np.random.default_rng(0)
    base = cv2_blur(rng.random((80, 80)).astype(np.float32))
    frames = np.stack([base[8:72, 8 - s : 72 - s] for s in (0, 1, 2)])  # content moves right
    flow = consecutive_flow(frames)
    assert flow.shape == (3, 2, 64, 64)
    assert not flow[0].any()
    inner = flow[1:, :, 16:48, 16:48]
    assert np.allclose(inner[:, 0].mean(axis=(1, 2)), 1.0, atol=0.25)
    assert np.abs(inner[:, 1].mean()) < 0.2


def cv2_blur(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(image, (0, 0), 2.0) * 3 - 1


def test_landmark_plane_round_trips_68_points() -> None:
    points = np.random.default_rng(0).uniform(0, 40, (68, 2)).astype(np.float32)
    plane = landmark_plane(points, 12)
    assert plane.shape == (12, 12) and plane.dtype == np.float32
    assert plane[0, :2].tolist() == points[0].tolist() and plane[0, 2] == points[1, 0]  # x0 y0 x1
    assert not plane.reshape(-1)[136:].any()
    assert np.array_equal(plane_landmarks(plane), points)
    with pytest.raises(DataLayoutError, match="at least 136 entries"):
        landmark_plane(points, 11)
    assert landmark_box(64, 0.0) == (0, 0, 63, 63)
    assert landmark_box(120, 0.1) == (10, 10, 109, 109)


def test_pack_sequence_on_a_face_clip() -> None:
    face = render_face(random_face(np.random.default_rng(3)), 64) / 255.0
    frames = np.stack([face, np.roll(face, 1, axis=1), np.roll(face, 2, axis=1)])[:, None]
    packed = pack_sequence(frames)
    assert packed.shape == (3, 4, 64, 64) and packed.dtype == np.float32
    assert np.array_equal(packed[:, 0], frames[:, 0])
    assert packed[2, 1, 20:44, 20:44].mean() == pytest.approx(1.0, abs=0.3)  # TV-L1: 1 px right
    points = [plane_landmarks(plane) for plane in packed[:, 3]]
    for frame, pts in zip(frames, points, strict=True):
        assert np.allclose(pts, frame_landmarks(frame[0]))  # dlib's points, as packed
        assert pts.mean(axis=0).min() > 4 and pts.mean(axis=0).max() < 60  # on the face
    dx, dy = (points[2] - points[0]).mean(axis=0)
    assert dx == pytest.approx(2.0, abs=0.6) and abs(dy) < 1.0  # follow the face (dlib jitter)
    bare = pack_sequence(frames, targets=False)
    assert not bare[:, 1:].any()
    given = np.tile(np.arange(136, dtype=np.float32).reshape(68, 2), (3, 1, 1))
    assert np.array_equal(plane_landmarks(pack_sequence(frames, landmarks=given)[1, 3]), given[1])
    assert pack_sequences(frames[None], targets=False).shape == (1, 3, 4, 64, 64)
    assert pack_sequences(np.zeros((0, 3, 1, 64, 64), np.float32)).shape == (0, 3, 4, 64, 64)
    with pytest.raises(DataLayoutError, match=r"\(T, 1, S, S\)"):
        pack_sequence(np.zeros((3, 3, 64, 64), np.float32))
