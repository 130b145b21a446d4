"""ICIP 2024: dual-branch 3-D CNN + enhanced channel attention + GRU, as the authors' code has it.

Faithful to the authors' Keras code (facts in SEED_SYSTEMS.md section 1, `ME_model.py:194-251`,
`attention.py:4-64`), in PyTorch; T, H, W below are the clip's frames and size:

1. two parallel 3-D conv branches on the clip: Conv3d 32, kernel 5 (padding 2) and Conv3d 32,
   kernel 3 (padding 1), each -> LeakyReLU 0.2 -> MaxPool3d 2 (time included, ceil mode, as
   Keras' "same" pooling) -> (32, T/2, H/2, W/2) each;
2. channels concatenated (64) -> Conv3d 32, kernel 3 -> LeakyReLU 0.2 -> MaxPool3d 2 (ceil:
   30 frames -> 15 -> 8 steps);
3. the attention block (`EnhancedCBAM`), from one input in parallel: x * M_c * M_s with the
   enhanced channel map M_c = sigmoid(0.5 * (MLP_max(maxpool x) - MLP_avg(avgpool x))) -- two
   SEPARATE MLPs 32 -> 4 -> LeakyReLU 0.2 -> 32, a scaled difference, not CBAM's sum -- and a
   32-channel spatial map M_s = sigmoid(Conv3d 2 -> 32, kernel 3, of [channel max, channel mean]);
4. per time step: flatten (32 H/4 W/4) -> dropout -> Dense 128 -> LeakyReLU 0.2 -> dropout ->
   Dense 64 -> LeakyReLU 0.2 -> dropout (dropout 0.5 for CASME II, 0.3 for SAMM and SMIC);
5. GRU 1024 (one layer, one direction) returning every step;
6. per step Dense 32 -> LeakyReLU 0.2 -> Dense K: one class score per step.

Loss (`criterion`, the engine's hook): per step weighted cross-entropy
-sum_c w_c y_c log(max(p_c, 1e-15)), every step carrying the clip's label, averaged over batch and
steps (not divided by sum w). w = (0.3, 0.35, 0.35) for merkit's 3-class order (negative,
positive, surprise: the authors' neg, pos, sur); for any other class set merkit uses equal
weights 1/K (same total as the authors'), or `class_weights` when given. `aux_loss` adds
L2 0.01 * sum w^2 on the kernels the authors regularise: Dense 128, Dense 64 and the first layer
of both attention MLPs (so a recipe for this model sets weight_decay 0). Initialisation: Keras'
he_normal (truncated normal, std sqrt(2 / fan_in)) on every conv and Dense, zero biases; the last
Dense and the GRU keep Keras' defaults (Glorot uniform; orthogonal recurrent weights).

Prediction (merkit's choice): the mean over steps of the per-step class probabilities, returned
as its log. Every step is trained on the clip's label, so each is a classifier of the clip, and
the mean is the average of classifiers that objective sets up; the authors score time step 0 only
(`ME_model.py:34`). Step 0 does not see only the clip's start: through the convolutions (both
stages and the spatial-attention conv) it depends on frames 0-11 of 30, and through the channel
attention's pooling over the whole volume on all 30; what it lacks is the GRU's later steps.
`score_step=0` gives theirs (the `paper` recipes use it).

Where the sheet is silent or merkit differs, the choice is merkit's:
- input scaling: frames in 0..1 enter as (x - 0.5) / 0.5; the authors subtract a scalar mean and
  divide by a scalar max computed on the whole dataset, test subjects included;
- he_normal on the attention MLPs' first layers and on the spatial-map conv (the sheet gives it
  for the network's convs and Dense layers);
- the Dense input size is fixed by `size` (frame side), so a model is built for one frame size;
- the frames are those `prepare` resamples evenly from onset to offset; the authors read frames
  0..29 of each video (0..9 for SMIC);
- torch's Adam adds eps after the bias correction, Keras' before (`recipe.eps` = 1e-7 as theirs);
- every training batch is full: merkit's batch stream runs across epoch ends (an epoch is
  ceil(N / 8) batches of 8, the last filled from the next shuffled pass), where Keras' `fit`
  ends each epoch with a smaller batch.
The released script tiles labels to 4 steps against 8 (T=30) or 3 (T=10) outputs and cannot run
as released; the intent, every step carrying the label, is what is implemented.

Input layout (see `merkit.models.layers`): (B, T * C, H, W), frame-major, C = `frame_channels`.
The model's declared input is the authors' (30 RGB frames of 128 x 128); its default recipe
trains a CPU-sized version (`PRESETS`, below).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from merkit.errors import ConfigError
from merkit.models.layers import frames_in, unstack_frames
from merkit.models.registry import InputSpec, Preset, register_model

# The authors' class weights, in their (and merkit's 3-class) order: negative, positive, surprise.
AUTHORS_WEIGHTS = (0.3, 0.35, 0.35)
LOG_FLOOR = math.log(1e-15)  # the authors clip probabilities at 1e-15 before the log


@dataclass
class ICIP24Config:
    """The network's sizes; defaults are the authors' (CASME II)."""

    frame_channels: int = 3  # C of the (B, T * C, H, W) layout: RGB
    size: int = 128  # frame side the per-step Dense layers are built for
    filters: int = 32  # every 3-D conv
    reduction: int = 8  # attention MLPs: filters -> filters / reduction -> filters
    dense: tuple[int, int] = (128, 64)
    hidden: int = 1024  # GRU
    head: int = 32  # per-step Dense before the classes
    dropout: float = 0.5  # 0.5 CASME II, 0.3 SAMM and SMIC
    slope: float = 0.2  # LeakyReLU
    l2: float = 0.01  # Keras L2 on the regularised kernels
    class_weights: tuple[float, ...] | None = None  # None: see the module docstring
    score_step: int | None = None  # None: mean of the steps' probabilities; 0: the authors'


def he_normal_(weight: torch.Tensor) -> torch.Tensor:
    """Keras' he_normal: normal of std sqrt(2 / fan_in) truncated at 2 std (std corrected)."""
    fan_in = weight[0].numel() if weight.ndim > 1 else weight.numel()
    std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
    return nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)


def _he(layer: nn.Module) -> nn.Module:
    he_normal_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _glorot(layer: nn.Linear) -> nn.Linear:
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def pooled_steps(frames: int) -> int:
    """Time steps left after the two ceil-mode poolings (30 -> 8, 10 -> 3)."""
    return math.ceil(math.ceil(frames / 2) / 2)


class ConvUnit3d(nn.Sequential):
    """Conv3d (same padding) -> LeakyReLU -> MaxPool3d 2 over time and space (ceil mode)."""

    def __init__(self, in_chans: int, out_chans: int, kernel: int, slope: float) -> None:
        super().__init__(
            _he(nn.Conv3d(in_chans, out_chans, kernel, padding=kernel // 2)),
            nn.LeakyReLU(slope),
            nn.MaxPool3d(2, ceil_mode=True),
        )


class AttentionMLP(nn.Sequential):
    """dim -> dim / reduction -> LeakyReLU -> dim; the first kernel carries the L2 penalty."""

    def __init__(self, dim: int, reduction: int, slope: float) -> None:
        super().__init__(
            _he(nn.Linear(dim, dim // reduction)),
            nn.LeakyReLU(slope),
            _he(nn.Linear(dim // reduction, dim)),
        )


class EnhancedCBAM(nn.Module):
    """The authors' attention: x * M_c * M_s, both maps from x (parallel, not CBAM's sequence).

    M_c (B, C, 1, 1, 1) = sigmoid(0.5 * (MLP_max(max) - MLP_avg(avg))) over (T, H, W);
    M_s (B, C, T, H, W) = sigmoid(Conv3d(2 -> C, k3)([channel max, channel mean])).
    """

    def __init__(self, dim: int, reduction: int, slope: float) -> None:
        super().__init__()
        self.mlp_max = AttentionMLP(dim, reduction, slope)
        self.mlp_avg = AttentionMLP(dim, reduction, slope)
        self.spatial = _he(nn.Conv3d(2, dim, 3, padding=1))

    def channel_map(self, x: torch.Tensor) -> torch.Tensor:
        peak, mean = x.amax(dim=(2, 3, 4)), x.mean(dim=(2, 3, 4))
        gate = torch.sigmoid(0.5 * (self.mlp_max(peak) - self.mlp_avg(mean)))
        return gate[:, :, None, None, None]

    def spatial_map(self, x: torch.Tensor) -> torch.Tensor:
        stacked = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.spatial(stacked))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.channel_map(x) * self.spatial_map(x)


class ICIP24(nn.Module):
    """Dual-branch 3-D CNN -> enhanced CBAM -> per-step Dense -> GRU -> per-step classes."""

    def __init__(
        self,
        num_classes: int = 3,
        in_chans: int = 90,
        config: ICIP24Config | None = None,
        **overrides: object,
    ) -> None:
        super().__init__()
        cfg = ICIP24Config(**{**asdict(config or ICIP24Config()), **overrides})
        self.config = cfg
        self.frames = frames_in(in_chans, cfg.frame_channels, "icip24", minimum=1)
        self.steps = pooled_steps(self.frames)
        if cfg.score_step is not None and not 0 <= cfg.score_step < self.steps:
            raise ConfigError(
                f"model 'icip24': score_step {cfg.score_step} is not one of the {self.steps} "
                f"steps of a {self.frames}-frame clip"
            )
        f, c = cfg.filters, cfg.frame_channels
        if f < cfg.reduction:
            raise ConfigError(
                f"model 'icip24': {f} filters leave no unit after reduction by {cfg.reduction}"
            )
        self.branch5 = ConvUnit3d(c, f, 5, cfg.slope)
        self.branch3 = ConvUnit3d(c, f, 3, cfg.slope)
        self.fuse = ConvUnit3d(2 * f, f, 3, cfg.slope)
        self.attention = EnhancedCBAM(f, cfg.reduction, cfg.slope)
        side = math.ceil(math.ceil(cfg.size / 2) / 2)
        self.dropout = nn.Dropout(cfg.dropout)
        self.act = nn.LeakyReLU(cfg.slope)
        self.dense1 = _he(nn.Linear(f * side * side, cfg.dense[0]))
        self.dense2 = _he(nn.Linear(cfg.dense[0], cfg.dense[1]))
        self.gru = nn.GRU(cfg.dense[1], cfg.hidden, batch_first=True)
        nn.init.xavier_uniform_(self.gru.weight_ih_l0)
        nn.init.orthogonal_(self.gru.weight_hh_l0)
        nn.init.zeros_(self.gru.bias_ih_l0)
        nn.init.zeros_(self.gru.bias_hh_l0)
        self.head1 = _he(nn.Linear(cfg.hidden, cfg.head))
        self.head2 = _glorot(nn.Linear(cfg.head, num_classes))
        weights = cfg.class_weights or (
            AUTHORS_WEIGHTS if num_classes == 3 else (1.0 / num_classes,) * num_classes
        )
        if len(weights) != num_classes:
            raise ConfigError(
                f"model 'icip24': {len(weights)} class_weights for {num_classes} classes"
            )
        self.register_buffer("class_weights", torch.tensor(weights, dtype=torch.float32))
        self.regularised = (self.dense1, self.dense2, self.attention.mlp_max[0])
        self.regularised += (self.attention.mlp_avg[0],)
        self._steps: torch.Tensor | None = None
        self._penalise = False

    def step_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T * C, H, W) clips -> (B, steps, K) class scores of every time step."""
        clip = unstack_frames(x, self.config.frame_channels).transpose(1, 2)  # (B, C, T, H, W)
        clip = (clip - 0.5) / 0.5
        volume = self.fuse(torch.cat([self.branch5(clip), self.branch3(clip)], dim=1))
        volume = self.attention(volume)
        steps = volume.transpose(1, 2).flatten(2)  # (B, T', C * H' * W') per step
        steps = self.dropout(steps)
        steps = self.dropout(self.act(self.dense1(steps)))
        steps = self.dropout(self.act(self.dense2(steps)))
        hidden, _ = self.gru(steps)
        return self.head2(self.act(self.head1(hidden)))

    def score(self, steps: torch.Tensor) -> torch.Tensor:
        """(B, steps, K) -> (B, K) logits of the clip: see the module docstring."""
        if self.config.score_step is not None:
            return steps[:, self.config.score_step]
        return steps.softmax(-1).mean(1).clamp_min(1e-12).log()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = self.step_logits(x)
        if self.training:
            self._steps, self._penalise = steps, True
        return self.score(steps)

    def criterion(self, target: torch.Tensor) -> torch.Tensor:
        """(B,) per-sample loss of the last training forward: the weighted cross-entropy of every
        step against the clip's (B, K) target, averaged over steps."""
        if self._steps is None:
            raise RuntimeError("icip24: criterion() needs a training forward first")
        steps, self._steps = self._steps, None
        log_p = steps.log_softmax(-1).clamp_min(LOG_FLOOR)
        return -(target[:, None] * self.class_weights * log_p).sum(-1).mean(1)

    def aux_loss(self) -> torch.Tensor | None:
        """L2 penalty on the regularised kernels, once per training forward (else None)."""
        if not self._penalise:
            return None
        self._penalise = False
        return self.config.l2 * sum(layer.weight.pow(2).sum() for layer in self.regularised)


# The authors' optimiser (`ME_model.py:66-73, 226-251`): Keras' 'adam' (lr 1e-3, eps 1e-7),
# batch 8, constant rate, no augmentation, no weight decay (the model adds its own L2 on the
# layers the authors regularise). Shared by merkit's CPU-sized default and the `paper` presets.
_AUTHORS_OPTIMISER = {
    "batch_size": 8,
    "optimizer": "adam",
    "lr": 1e-3,
    "eps": 1e-7,
    "weight_decay": 0.0,
    "schedule": "constant",
    "augment": {"hflip": False, "max_shift": 0},
}


def _paper(dropout: float, frames: int) -> Preset:
    """The authors' recipe: 200 epochs on RGB frames of 128 x 128, time step 0 scored."""
    return Preset(
        recipe={
            **_AUTHORS_OPTIMISER,
            "model_kwargs": {
                "frame_channels": 3,
                "size": 128,
                "dropout": dropout,
                "score_step": 0,
            },
            "epochs": 200,
        },
        input={"frames": frames, "size": 128, "color": True},
    )


PRESETS = {
    # merkit's CPU-sized version of the authors' network: 10 grey frames of 48 x 48 (SMIC's 10
    # frames give the same 3 GRU steps), 16 filters instead of 32, 30 epochs instead of 200.
    "default": Preset(
        recipe={
            **_AUTHORS_OPTIMISER,
            "model_kwargs": {"frame_channels": 1, "size": 48, "filters": 16},
            "epochs": 30,
        },
        input={"frames": 10, "size": 48, "color": False},
    ),
    # The authors' per dataset: CASME II 30 frames, dropout 0.5; SAMM 30, 0.3; SMIC 10, 0.3.
    "paper": _paper(0.5, 30),
    "paper-samm": _paper(0.3, 30),
    "paper-smic": _paper(0.3, 10),
}


@register_model(
    "icip24",
    summary="ICIP 2024: dual-branch 3-D CNN, enhanced channel attention and GRU (authors' code)",
    input=InputSpec("sequence", 3, (128, 128), frames=30),
    presets=PRESETS,
    hooks=("aux_loss", "criterion"),
)
def icip24(num_classes: int = 3, in_chans: int = 90, **kwargs: object) -> ICIP24:
    """ICIP24 of `ICIP24Config` (keyword overrides)."""
    return ICIP24(num_classes, in_chans, **kwargs)
