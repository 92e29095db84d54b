"""The paper's generator G (Table 2), its feature layer, and the autoencoder's encoder.

G maps a feature vector (N = 128 * 5 * 5 = 3200) to an image through six stages of
"upsample x2, conv + ReLU, BN, conv + ReLU, BN" and a last 3-channel conv + BN.
Channel width and output size are parameters, so that a light CPU variant and the
paper's exact network are the same code.

Many independent generators are run as one network with grouped convolutions: with
batch 1 and ``n_models * C`` channels in groups of ``C``, every conv and every
(batch-statistics) BatchNorm acts on each model separately, which is exactly "K
separate G's at batch 1" in one kernel call per layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dgncore.models.generator_config import (  # noqa: F401 - the shape of G lives beside it, without torch
    N_FEATURES,
    PAPER_STAGES,
    SEED_CHANNELS,
    SEED_SIZE,
    GeneratorConfig,
    NoiseKind,
)

#: Run G in channels-last memory format (read when a Generator is built; faster than NCHW
#: on the CPUs measured in bench/README.md, "ab").
CHANNELS_LAST = True


def _bn(channels: int, running_stats: bool) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, track_running_stats=running_stats)


class Generator(nn.Module):
    """G: features (K, N) -> images (K, 3, S, S) in [0, 1].

    With ``n_models == 1`` the K rows are a normal batch through one shared G (the
    pretrained decoder); with ``n_models == K > 1`` row k goes through its own G.
    """

    def __init__(self, config: GeneratorConfig = GeneratorConfig(), n_models: int = 1) -> None:
        super().__init__()
        if n_models > 1 and config.running_stats:
            raise ValueError("grouped generators use per-image BatchNorm statistics")
        self.config = config
        self.n_models = n_models
        g = n_models
        layers: list[nn.Module] = []
        c_in = SEED_CHANNELS
        stages = list(zip(PAPER_STAGES[: config.stages], config.channels()))
        last = stages.pop() if config.rgb_last_stage else None
        for (_, k), c in stages:
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c_in * g, c * g, k, groups=g),
                nn.ReLU(inplace=True),
                _bn(c * g, config.running_stats),
                # Keras "same" for an even kernel pads one more on the right and bottom.
                nn.ZeroPad2d(((k - 1) // 2, k // 2, (k - 1) // 2, k // 2)),
                nn.Conv2d(c * g, c * g, k, groups=g),
                nn.ReLU(inplace=True),
                _bn(c * g, config.running_stats),
            ]
            c_in = c
        if last is not None:
            (_, k), _ = last
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c_in * g, 3 * g, k, groups=g),
                nn.ReLU(inplace=True),
                _bn(3 * g, config.running_stats),
            ]
        else:
            layers += [nn.Conv2d(c_in * g, 3 * g, 3, padding=1, groups=g), _bn(3 * g, config.running_stats)]
        self.body = nn.Sequential(*layers)
        self.channels_last = CHANNELS_LAST
        if self.channels_last:
            self.body.to(memory_format=torch.channels_last)

    def set_models(self, new: int) -> None:
        """Tell the grouped layers that their weights now hold ``new`` models (after
        :meth:`ImageSource.keep_rows` cut them down)."""
        old = self.n_models
        for m in self.body:
            if isinstance(m, nn.Conv2d):
                m.groups, m.in_channels, m.out_channels = new, m.in_channels // old * new, m.out_channels // old * new
            elif isinstance(m, nn.BatchNorm2d):
                m.num_features = m.num_features // old * new
        self.n_models = new

    @property
    def image_bn(self) -> nn.BatchNorm2d:
        """The final BN whose gamma the untrained regulariser R penalises."""
        return self.body[-1]  # type: ignore[return-value]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        k = features.shape[0]
        if self.n_models > 1:
            if k != self.n_models:
                raise ValueError(f"expected {self.n_models} feature rows, got {k}")
            x = features.reshape(1, k * SEED_CHANNELS, SEED_SIZE, SEED_SIZE)
        else:
            x = features.reshape(k, SEED_CHANNELS, SEED_SIZE, SEED_SIZE)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.body(x)
        x = x.reshape(k, 3, x.shape[-2], x.shape[-1])
        if x.shape[-1] != self.config.out_size:
            # (in fp32: the antialiased resize has no bf16 kernel on CPU, for bf16 autocast)
            x = F.interpolate(x.float(), size=self.config.out_size, mode="bilinear", align_corners=False, antialias=True)
        return torch.sigmoid(x)


class FeatureLayer(nn.Module):
    """The first layer of G: f = alpha * eps(1), one alpha row per target.

    ``additive``: f = alpha * (1 + N(0, sigma^2)), noise added to the constant input
    (untrained G, sigma = 2); ``multiplicative``: f = (alpha * 1) * N(1, sigma^2), Keras'
    GaussianDropout after alpha (pretrained G, sigma = 0.05). With a constant input of
    ones both are alpha * (1 + sigma * z); the kind is kept for the record. Noise is drawn
    only in training mode.
    """

    def __init__(
        self,
        n_rows: int,
        n_features: int = N_FEATURES,
        noise: NoiseKind = "additive",
        sigma: float = 2.0,
        init: torch.Tensor | float = 1.0,
        relu: bool = False,
    ) -> None:
        super().__init__()
        alpha = torch.empty(n_rows, n_features)
        if isinstance(init, torch.Tensor):
            alpha.copy_(init.expand_as(alpha))
        else:
            alpha.fill_(init)
        self.alpha = nn.Parameter(alpha)
        self.noise = noise
        self.sigma = sigma
        self.relu = relu

    def forward(self) -> torch.Tensor:
        a = self.alpha
        if self.training and self.noise != "none" and self.sigma > 0:
            f = a * (1.0 + self.sigma * torch.randn_like(a))
        else:
            f = a
        return torch.relu(f) if self.relu else f


def vgg_blocks(channels: tuple[int, ...], width: float) -> tuple[list[nn.Module], int]:
    """The encoders' blocks: per entry of ``channels`` (scaled by ``width``, at least 4),
    (conv3x3 + ReLU, BN) x 2 + max-pool; returns the layers and the last block's channels."""
    layers: list[nn.Module] = []
    c_in = 3
    for c in channels:
        c = max(4, int(round(c * width)))
        layers += [
            nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(c),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(c),
            nn.MaxPool2d(2),
        ]
        c_in = c
    return layers, c_in


class Encoder(nn.Module):
    """VGG-like encoder of the denoising autoencoder: five blocks of
    (conv3x3 + ReLU, BN) x 2 + max-pool, then dense -> dense -> N features (ReLU, so that
    codes live where the pretrained feature layer's ReLU can reach them)."""

    def __init__(self, width: float = 1.0, n_features: int = N_FEATURES, hidden: int = 2048) -> None:
        super().__init__()
        layers, c_in = vgg_blocks((32, 64, 128, 256, 512), width)
        hidden = max(64, int(round(hidden * width)))
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Sequential(
            nn.Linear(c_in * 16, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n_features), nn.ReLU()
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def paper_parameter_count() -> int:
    """Trainable variables of the untrained configuration (paper's Table 1: 5,240,841)."""
    g = Generator(GeneratorConfig(rgb_last_stage=True))
    return count_parameters(g) + N_FEATURES


__all__ = [
    "N_FEATURES", "PAPER_STAGES", "GeneratorConfig", "Generator", "FeatureLayer", "Encoder",
    "count_parameters", "paper_parameter_count",
]
