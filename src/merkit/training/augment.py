"""Flow-aware augmentation of (N, C, H, W) motion maps, batched on tensors.

A horizontal flip mirrors the map AND reverses the horizontal motion u (channel 0): a face moving
left, mirrored, moves right. For maps min-max scaled to 0..1 per sample (the published STSTNet
format) the reversed u is exactly 1 - u, since min and max swap; for signed raw flow it is -u.
v (vertical motion) and strain (a magnitude) are unchanged by a horizontal flip.
Shifts, zooms and small rotations move the map spatially; vectors are not rotated (for the few
degrees used the error is below sin(angle)), and borders repeat the edge values.

Two more mimic how the published maps vary: `contrast` scales the motion about each channel's
no-motion level (its spatial median: most of a face does not move), as a sample whose per-map
min-max scaling was set by a smaller or larger extreme would look; `erase` resets a random patch
to that level (cutout), so no single region can carry the decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from merkit.training.recipe import AugmentConfig

U_SCALINGS = ("minmax", "signed")


def hflip_flow(x: torch.Tensor, u_scaling: str = "minmax") -> torch.Tensor:
    """Mirror (N, C, H, W) maps left-right and reverse the horizontal motion channel u."""
    if u_scaling not in U_SCALINGS:
        raise ValueError(f"u_scaling must be one of {U_SCALINGS}, got {u_scaling!r}")
    flipped = x.flip(-1).clone()
    flipped[:, 0] = 1.0 - flipped[:, 0] if u_scaling == "minmax" else -flipped[:, 0]
    return flipped


@dataclass
class AugmentParams:
    """Per-sample random draws, so several independently seeded streams can be applied at once."""

    flip: torch.Tensor  # (N,) bool
    shift: torch.Tensor  # (N, 2) pixels (dx, dy)
    angle: torch.Tensor  # (N,) degrees
    noise: torch.Tensor  # (N, C, H, W) additive Gaussian noise, or (N, 0, 0, 0) when off
    scale: torch.Tensor  # (N,) zoom factor
    gain: torch.Tensor  # (N, C) motion gain about the no-motion level
    erase: torch.Tensor  # (N, 4) patch (top, left, height, width) reset to no motion; 0 size: none

    @classmethod
    def cat(cls, parts: list[AugmentParams]) -> AugmentParams:
        return cls(*(torch.cat([getattr(p, k) for p in parts]) for k in _PARAM_KEYS))

    def to(self, device: torch.device) -> AugmentParams:
        """The draws on `device` (they are drawn on the CPU, from the jobs' generators, so a
        seed gives the same augmentation on every device)."""
        if device.type == "cpu":
            return self
        moved = (getattr(self, k).to(device, non_blocking=True) for k in _PARAM_KEYS)
        return AugmentParams(*moved)


_PARAM_KEYS = ("flip", "shift", "angle", "noise", "scale", "gain", "erase")


def sample_params(
    shape: tuple[int, ...], cfg: AugmentConfig, generator: torch.Generator
) -> AugmentParams:
    """Draw the augmentation of a batch of `shape` (N, C, H, W) from `generator`.

    An option left at 0 draws nothing, so adding options never changes older recipes' streams.
    """
    n, c, h, w = shape
    flip = torch.rand(n, generator=generator) < 0.5
    if not cfg.hflip:
        flip = torch.zeros(n, dtype=torch.bool)
    s = cfg.max_shift
    shift = torch.randint(-s, s + 1, (n, 2), generator=generator).float()
    angle = (torch.rand(n, generator=generator) * 2 - 1) * cfg.max_rotate
    noise = torch.zeros(n, 0, 0, 0)
    if cfg.noise_std > 0:
        noise = torch.randn(shape, generator=generator) * cfg.noise_std
    scale = torch.ones(n)
    if cfg.max_scale > 0:
        scale = 1 + (torch.rand(n, generator=generator) * 2 - 1) * cfg.max_scale
    gain = torch.ones(n, c)
    if cfg.contrast > 0:
        log_gain = (torch.rand(n, c, generator=generator) * 2 - 1) * math.log1p(cfg.contrast)
        gain = log_gain.exp()
    erase = torch.zeros(n, 4, dtype=torch.long)
    if cfg.erase > 0:
        erase = _draw_patches(n, h, w, cfg.erase, generator)
    return AugmentParams(flip, shift, angle, noise, scale, gain, erase)


def _draw_patches(n: int, h: int, w: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """(N, 4) patches of 1/8 to 1/3 of each side at random places, each kept with probability p."""
    on = torch.rand(n, generator=generator) < p
    size = torch.rand(n, 2, generator=generator)
    ph = (h / 8 + size[:, 0] * (h / 3 - h / 8)).round().long().clamp(1, h)
    pw = (w / 8 + size[:, 1] * (w / 3 - w / 8)).round().long().clamp(1, w)
    place = torch.rand(n, 2, generator=generator)
    top = (place[:, 0] * (h - ph + 1)).long()
    left = (place[:, 1] * (w - pw + 1)).long()
    return torch.stack([top, left, ph * on, pw * on], dim=1)


def apply_params(x: torch.Tensor, params: AugmentParams, cfg: AugmentConfig) -> torch.Tensor:
    """Apply drawn flips, shifts, zooms, rotations, gains and patches to the (N, C, H, W) `x`."""
    x = torch.where(params.flip.view(-1, 1, 1, 1), hflip_flow(x, cfg.u_scaling), x)
    if cfg.max_shift > 0 or cfg.max_rotate > 0 or cfg.max_scale > 0:
        x = _affine(x, params.shift, params.angle, params.scale)
    if cfg.contrast > 0 or cfg.erase > 0:
        x = _rescale_and_erase(x, params.gain, params.erase, clamp=cfg.u_scaling == "minmax")
    if cfg.noise_std > 0:
        x = x + params.noise
    return x


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Randomly augment a batch of maps (draw, then apply)."""
    return apply_params(x, sample_params(tuple(x.shape), cfg, generator), cfg)


def _rescale_and_erase(
    x: torch.Tensor, gain: torch.Tensor, erase: torch.Tensor, clamp: bool
) -> torch.Tensor:
    """Scale each channel about its spatial median by `gain`, then reset `erase` patches to it."""
    n, c, h, w = x.shape
    level = x.flatten(2).median(dim=2).values[..., None, None]  # (N, C, 1, 1)
    x = level + gain.to(x.dtype)[..., None, None] * (x - level)
    if clamp:
        x = x.clamp(0.0, 1.0)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    top, left, ph, pw = (erase[:, i].view(n, 1, 1) for i in range(4))
    inside = (rows >= top) & (rows < top + ph) & (cols >= left) & (cols < left + pw)
    return torch.where(inside[:, None], level, x)


def _affine(
    x: torch.Tensor, shift: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Rotate by `angle` degrees about the centre, zoom by `scale` and translate by `shift`
    pixels, per sample."""
    n, _, h, w = x.shape
    rad = angle * (math.pi / 180)
    cos, sin = torch.cos(rad) / scale, torch.sin(rad) / scale  # a zoom-in samples a smaller area
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    theta[:, 0, 2] = -2 * shift[:, 0] / w  # sampling grid moves opposite to the content
    theta[:, 1, 2] = -2 * shift[:, 1] / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
