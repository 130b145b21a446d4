"""Flow-aware augmentation of (N, C, H, W) motion maps, batched on tensors.

A horizontal flip mirrors the map AND reverses the horizontal motion u (channel 0): a face moving
left, mirrored, moves right. For maps min-max scaled to 0..1 per sample (the published STSTNet
format) the reversed u is exactly 1 - u, since min and max swap; for signed raw flow it is -u.
v (vertical motion) and strain (a magnitude) are unchanged by a horizontal flip.
Shifts and small rotations move the map spatially; vectors are not rotated (for the few degrees
used the error is below sin(angle)), and borders repeat the edge values.
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

    @classmethod
    def cat(cls, parts: list[AugmentParams]) -> AugmentParams:
        keys = ("flip", "shift", "angle", "noise")
        return cls(*(torch.cat([getattr(p, k) for p in parts]) for k in keys))


def sample_params(
    shape: tuple[int, ...], cfg: AugmentConfig, generator: torch.Generator
) -> AugmentParams:
    """Draw the augmentation of a batch of `shape` (N, C, H, W) from `generator`."""
    n = shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    if not cfg.hflip:
        flip = torch.zeros(n, dtype=torch.bool)
    s = cfg.max_shift
    shift = torch.randint(-s, s + 1, (n, 2), generator=generator).float()
    angle = (torch.rand(n, generator=generator) * 2 - 1) * cfg.max_rotate
    noise = torch.zeros(n, 0, 0, 0)
    if cfg.noise_std > 0:
        noise = torch.randn(shape, generator=generator) * cfg.noise_std
    return AugmentParams(flip, shift, angle, noise)


def apply_params(x: torch.Tensor, params: AugmentParams, cfg: AugmentConfig) -> torch.Tensor:
    """Apply drawn flips, shifts and rotations to the (N, C, H, W) batch `x`."""
    x = torch.where(params.flip.view(-1, 1, 1, 1), hflip_flow(x, cfg.u_scaling), x)
    if cfg.max_shift > 0 or cfg.max_rotate > 0:
        x = _affine(x, params.shift, params.angle)
    if cfg.noise_std > 0:
        x = x + params.noise
    return x


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Randomly augment a batch of maps (draw, then apply)."""
    return apply_params(x, sample_params(tuple(x.shape), cfg, generator), cfg)


def _affine(x: torch.Tensor, shift: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate by `angle` degrees about the centre and translate by `shift` pixels, per sample."""
    n, _, h, w = x.shape
    rad = angle * (math.pi / 180)
    cos, sin = torch.cos(rad), torch.sin(rad)
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    theta[:, 0, 2] = -2 * shift[:, 0] / w  # sampling grid moves opposite to the content
    theta[:, 1, 2] = -2 * shift[:, 1] / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
