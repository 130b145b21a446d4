"""FlowNetC (Dosovitskiy et al., 2015) in its BatchNorm variant, as MOL's flow head uses it.

Facts in SEED_SYSTEMS.md section 2 (MOL's `modules/FlowNet.py`): conv = conv without bias +
BatchNorm + LeakyReLU 0.1; siamese conv1-3 on the two frames; a correlation layer of kernel 1
over `patch` x `patch` displacements of step `dilation` (divided by the channels, LeakyReLU 0.1);
[redirected frame-t features, correlation, the caller's extra features] -> conv3_1 .. conv6_1 ->
a refinement decoder to full resolution, of which only the full-resolution flow is returned.
Initialisation: kaiming normal (a = 0.1), zero biases, BatchNorm 1 / 0.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn


def correlation(
    first: torch.Tensor, second: torch.Tensor, patch: int, dilation: int
) -> torch.Tensor:
    """FlowNetC's correlation with kernel 1: (B, patch^2, H, W), channel i * patch + j holding
    sum_c first[c, y, x] * second[c, y + (i - r) * dilation, x + (j - r) * dilation] (zero
    outside the map, r = patch // 2), as `spatial_correlation_sampler` computes it.

    Computed as every position's dot product with every other (one matrix product; the maps
    are small) from which each position's patch^2 displacements are read.
    """
    b, _, h, w = first.shape
    products = first.flatten(2).transpose(1, 2) @ second.flatten(2)  # (B, P, P)
    index, inside = _displacements(h, w, patch, dilation, first.device)
    picked = products.gather(2, index.expand(b, -1, -1)) * inside  # (B, P, patch^2)
    return picked.transpose(1, 2).reshape(b, patch * patch, h, w)


@lru_cache(maxsize=8)
def _displacements(
    h: int, w: int, patch: int, dilation: int, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """(P, patch^2) flat index of every position's displaced partner, and whether it is inside."""
    steps = (torch.arange(patch, device=device) - patch // 2) * dilation
    rows, cols = torch.meshgrid(
        torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
    )
    ty = rows.reshape(-1, 1, 1) + steps.view(1, -1, 1)  # (P, patch, 1)
    tx = cols.reshape(-1, 1, 1) + steps.view(1, 1, -1)  # (P, 1, patch)
    inside = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
    index = ty.clamp(0, h - 1) * w + tx.clamp(0, w - 1)
    return index.reshape(h * w, -1), inside.reshape(h * w, -1).float()


def _conv(in_chans: int, out_chans: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """FlowNetC's conv with BatchNorm: conv (no bias, padding (k-1)//2) -> BN -> LeakyReLU 0.1."""
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, kernel, stride, (kernel - 1) // 2, bias=False),
        nn.BatchNorm2d(out_chans),
        nn.LeakyReLU(0.1),
    )


def _deconv(in_chans: int, out_chans: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_chans, out_chans, 4, 2, 1, bias=False), nn.LeakyReLU(0.1)
    )


def _crop_like(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return x[:, :, : target.shape[2], : target.shape[3]]


class FlowNetC(nn.Module):
    """FlowNetC (BatchNorm variant) fed two grey frames and 2 * `dim` channels of features at the
    correlation's resolution (MOL: the F5C features of both frames).

    Channels are the authors' times `width`; `forward` returns the (B, 2, H, W) flow.
    """

    def __init__(self, dim: int, width: float, patch: int, dilation: int) -> None:
        super().__init__()

        def c(n: int) -> int:
            return max(1, round(n * width))

        self.patch, self.dilation = patch, dilation
        self.conv1 = _conv(1, c(64), 6, 2)
        self.conv2 = _conv(c(64), c(128), 4, 2)
        self.conv3 = _conv(c(128), c(256), 2, 2)
        self.conv_redir = _conv(c(256), c(32), 1)
        self.conv3_1 = _conv(c(32) + patch * patch + 2 * dim, c(256))
        self.conv4, self.conv4_1 = _conv(c(256), c(512), stride=2), _conv(c(512), c(512))
        self.conv5, self.conv5_1 = _conv(c(512), c(512), stride=2), _conv(c(512), c(512))
        self.conv6, self.conv6_1 = _conv(c(512), c(1024), stride=2), _conv(c(1024), c(1024))
        # Decoder, coarse to fine: each level concatenates [skip, deconv, upsampled flow] with
        # the skips conv5, conv4, conv3_1, conv2, conv1 and frame t.
        skips = [c(512), c(512), c(256), c(128), c(64), 1]
        outs = [c(512), c(256), c(128), c(128), c(64), c(32)]
        concat = c(1024)
        self.predict, self.deconvs = nn.ModuleList(), nn.ModuleList()
        self.upsample = nn.ModuleList()
        for skip, out in zip(skips, outs, strict=True):
            self.predict.append(nn.Conv2d(concat, 2, 3, 1, 1, bias=False))
            self.deconvs.append(_deconv(concat, out))
            self.upsample.append(nn.ConvTranspose2d(2, 2, 4, 2, 1, bias=False))
            concat = skip + out + 2
        self.predict_full = nn.Conv2d(concat, 2, 3, 1, 1, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, 0.1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(
        self, frame1: torch.Tensor, frame2: torch.Tensor, features: torch.Tensor
    ) -> torch.Tensor:
        conv1a = self.conv1(frame1)
        conv2a = self.conv2(conv1a)
        conv3a = self.conv3(conv2a)
        conv3b = self.conv3(self.conv2(self.conv1(frame2)))
        corr = correlation(conv3a, conv3b, self.patch, self.dilation) / conv3a.shape[1]
        x = torch.cat([self.conv_redir(conv3a), F.leaky_relu(corr, 0.1), features], dim=1)
        conv3 = self.conv3_1(x)
        conv4 = self.conv4_1(self.conv4(conv3))
        conv5 = self.conv5_1(self.conv5(conv4))
        x = self.conv6_1(self.conv6(conv5))
        levels = zip(
            (conv5, conv4, conv3, conv2a, conv1a, frame1),
            self.predict,
            self.deconvs,
            self.upsample,
            strict=True,
        )
        for skip, predict, deconv, upsample in levels:
            flow = _crop_like(upsample(predict(x)), skip)
            x = torch.cat([skip, _crop_like(deconv(x), skip), flow], dim=1)
        return self.predict_full(x)
