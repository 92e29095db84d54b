"""What the optimiser changes to make an image: one "image source" per method.

Every source makes a batch of images in [0, 1], one row per target, and knows its own
regulariser R(xi) from Equation 2:

- ``untrained``: the feature layer and a whole G from random weights, one G per target
  (grouped convolutions); R = L1 of the final BN's gamma.
- ``pretrained``: only the feature layer alpha in front of a frozen decoder from a
  denoising autoencoder; R = mean of alpha^2 (the paper's L2 / N).
- ``pixel``: the pixels themselves (paper Fig. 1), a baseline that shows what the
  generator prior adds; R = 0.
- ``fourier``: a Lucid-style baseline (Fourier-parameterised, decorrelated colour).
- ``natural``: the same parameterisation with the amplitude spectrum and colour of real
  photographs (:mod:`dgncore.prior.photostats`).

Any source can be seen by the classifier through Lucid's random jitter / scale / rotation
(``Preset.transforms``; on for ``fourier`` and ``natural``), see :func:`robust_view`, or
through Lucent's own set (``Preset.transform_set = "lucent"``), see :func:`lucent_view`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from dgncore.models.generators import N_FEATURES, FeatureLayer, Generator

if TYPE_CHECKING:
    from dgncore.drawing.presets import Preset
    from dgncore.prior.photostats import PhotoStats


def robust_view(images: torch.Tensor) -> torch.Tensor:
    """Lucid's transformation robustness: each row seen padded, jittered, scaled and
    rotated at random, so the optimiser cannot rely on exact pixel positions (images that
    survive this transfer better to other classifiers)."""
    b, s = images.shape[0], images.shape[-1]
    pad = s // 16
    x = F.pad(images, (pad,) * 4, mode="reflect")
    angle = (torch.rand(b, device=images.device) - 0.5) * (math.pi / 18)  # +-5 degrees
    scale = 1.0 + (torch.rand(b, device=images.device) - 0.5) * 0.2
    shift = (torch.rand(b, 2, device=images.device) - 0.5) * (2 * pad / (s + 2 * pad))
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), [b, 3, s, s], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


#: Lucent's standard transforms (lucent.optvis.transform.standard_transforms): a constant
#: 0.5 border of 12 px, a jitter of up to 8 px, a scale of 0.9-1.1 in steps of 0.02, a
#: rotation of -10..10 degrees (0 five times more often), another jitter of up to 4 px
LUCENT_PAD = 12
LUCENT_ANGLES = tuple(range(-10, 11)) + (0,) * 5
LUCENT_SCALES = tuple(1 + (i - 5) / 50 for i in range(11))


def lucent_view(images: torch.Tensor) -> torch.Tensor:
    """Lucent's transformation robustness, each row drawn on its own from the global
    (seeded) generator: padded with grey, then shifted, scaled and rotated in one resampling
    (Lucent does it in four; the composition is the same map), black where nothing was.
    Measured for the natural method (bench/README.md): better plausibility than
    :func:`robust_view` at the same steps."""
    b, s = images.shape[0], images.shape[-1]
    x = F.pad(images, (LUCENT_PAD,) * 4, value=0.5)
    size = s + 2 * LUCENT_PAD
    dev = images.device
    angle = torch.tensor(LUCENT_ANGLES, device=dev, dtype=torch.float32)[torch.randint(len(LUCENT_ANGLES), (b,), device=dev)] * (math.pi / 180)
    scale = torch.tensor(LUCENT_SCALES, device=dev, dtype=torch.float32)[torch.randint(len(LUCENT_SCALES), (b,), device=dev)]
    shift = (torch.randint(8, (b, 2), device=dev) + torch.randint(4, (b, 2), device=dev)).float() * (2.0 / size)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, -shift[:, 0]], 1), torch.stack([sin, cos, -shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), [b, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


#: the transformation sets a preset can ask for (``Preset.transform_set``)
VIEWS = {"robust": robust_view, "lucent": lucent_view}


def _row_slice(t: torch.Tensor, rows: int, keep: torch.Tensor) -> torch.Tensor:
    """Keep the rows ``keep`` of a tensor whose first dimension holds ``rows`` equal
    row-major blocks (one alpha row, or one grouped G's channels, per row)."""
    per = t.shape[0] // rows
    out = t.reshape(rows, per, *t.shape[1:])[keep].reshape(len(keep) * per, *t.shape[1:])
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


class ImageSource(nn.Module):
    """Base: ``forward()`` -> (B, 3, S, S) in [0, 1]; ``regularizer()`` -> (B,).

    Rows are independent problems; every trainable tensor holds one block per row along
    its first dimension, which is what lets :meth:`keep_rows` drop finished rows."""

    #: random jitter / scale / rotation before the classifier (``Preset.transforms``), and
    #: which set of them (``Preset.transform_set``: a key of :data:`VIEWS`)
    transforms: bool = False
    transform_set: str = "robust"

    def __init__(self, n_rows: int) -> None:
        super().__init__()
        self.n_rows = n_rows

    def classifier_view(self, images: torch.Tensor) -> torch.Tensor:
        """What the classifier sees during optimisation: a transformed copy when
        ``transforms`` is on; the image a user gets is ``forward()`` itself."""
        return VIEWS[self.transform_set](images) if self.transforms and self.training else images

    def regularizer(self) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def keep_rows(self, keep: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Go on with the rows ``keep`` only (sorted indices): every trainable parameter
        and its optimiser state is replaced by its cut-down copy, so a finished row costs
        nothing more. (New Parameter objects: autograd caches a leaf's shape.)"""
        keep = keep.to(next(self.parameters()).device)
        swapped: dict[nn.Parameter, nn.Parameter] = {}
        for module in self.modules():
            for name, p in list(module.named_parameters(recurse=False)):
                if p.requires_grad:
                    swapped[p] = nn.Parameter(_row_slice(p.detach(), self.n_rows, keep))
                    setattr(module, name, swapped[p])
        for group in optimizer.param_groups:
            group["params"] = [swapped.get(p, p) for p in group["params"]]
        for old, new in swapped.items():
            if old in optimizer.state:
                state = optimizer.state.pop(old)
                optimizer.state[new] = {k: _row_slice(v, self.n_rows, keep) if torch.is_tensor(v) and v.shape == old.shape else v
                                        for k, v in state.items()}
        self.n_rows = len(keep)


class UntrainedSource(ImageSource):
    def __init__(self, preset: "Preset", n: int) -> None:
        super().__init__(n)
        self.features = FeatureLayer(n, N_FEATURES, noise="additive", sigma=preset.noise_sigma, init=1.0)
        self.generator = Generator(preset.generator, n_models=n)
        self.reg_weight = preset.reg_weight

    def forward(self) -> torch.Tensor:
        return self.generator(self.features())

    def regularizer(self) -> torch.Tensor:
        gamma = self.generator.image_bn.weight.view(self.n_rows, 3)
        return self.reg_weight * gamma.abs().sum(1)

    def keep_rows(self, keep: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        super().keep_rows(keep, optimizer)
        self.generator.set_models(self.n_rows)


class PretrainedSource(ImageSource):
    def __init__(self, preset: "Preset", n: int, decoder: Generator, mean_code: torch.Tensor) -> None:
        super().__init__(n)
        self.features = FeatureLayer(n, N_FEATURES, noise="multiplicative", sigma=preset.noise_sigma, init=mean_code, relu=True)
        if preset.init_jitter > 0:  # a seeded start around the mean code (the global seed is set by optimize)
            with torch.no_grad():
                alpha = self.features.alpha
                alpha.mul_(1.0 + preset.init_jitter * torch.randn(alpha.shape).to(alpha))
        self.decoder = decoder
        self.reg_weight = preset.reg_weight

    def train(self, mode: bool = True) -> "PretrainedSource":
        super().train(mode)
        self.decoder.eval()  # the decoder's BN keeps the statistics it was trained with
        return self

    def forward(self) -> torch.Tensor:
        return self.decoder(self.features())

    def regularizer(self) -> torch.Tensor:
        return self.reg_weight * self.features.alpha.pow(2).mean(1)


class PixelSource(ImageSource):
    def __init__(self, preset: "Preset", n: int) -> None:
        super().__init__(n)
        size = preset.generator.out_size
        self.logits = nn.Parameter(torch.randn(n, 3, size, size) * 0.1)

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    def regularizer(self) -> torch.Tensor:
        return self.logits.new_zeros(self.logits.shape[0])


# Lucid's colour decorrelation matrix (Cholesky of ImageNet's colour covariance), public values.
_COLOR_CORRELATION = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR_CORRELATION = _COLOR_CORRELATION / _COLOR_CORRELATION.norm(dim=0).max()


class FourierSource(ImageSource):
    """A Fourier-parameterised image in decorrelated colour space (Lucid): the optimiser
    changes complex coefficients, each scaled by an amplitude per frequency, and a fixed
    matrix mixes the decorrelated channels into RGB before a sigmoid.

    Without ``stats`` (the ``fourier`` baseline) the amplitude is Lucid's 1/f and the
    colour matrix Lucid's; with photo statistics (the ``natural`` method) both are those of
    real photographs (:mod:`dgncore.prior.photostats`), and the image starts from their mean
    colour. The amplitude keeps Lucid's overall scale either way, so Adam's steps are alike."""

    def __init__(self, preset: "Preset", n: int, stats: "PhotoStats | None" = None) -> None:
        super().__init__(n)
        size = preset.generator.out_size
        fy = torch.fft.fftfreq(size)[:, None]
        fx = torch.fft.rfftfreq(size)[None, :]
        freqs = torch.sqrt(fx * fx + fy * fy)
        # Lucid/Lucent's fft_image: scale = 1 / max(f, 1/size) (decay power 1), image / 4.
        # (An extra 1/size here once made every Adam step far smaller than Lucent's; bench/README.md.)
        lucid = 1.0 / torch.clamp(freqs, min=1.0 / size)
        if stats is None:
            scale, colour, offset = lucid[None], _COLOR_CORRELATION, torch.zeros(3)
        else:
            amp = stats.spectrum_at(size)
            scale = amp * (lucid.norm() / amp.norm(dim=(1, 2), keepdim=True))
            colour = stats.colour / stats.colour.norm(dim=0).max()
            offset = torch.logit(stats.mean.clamp(0.01, 0.99))
        self.register_buffer("scale", scale.float())
        self.register_buffer("colour", colour.float())
        self.register_buffer("offset", offset.float().view(1, 3, 1, 1))
        self.spectrum = nn.Parameter(torch.randn(n, 3, size, size // 2 + 1, 2) * 0.01)
        self.size = size

    def forward(self) -> torch.Tensor:
        spec = torch.view_as_complex(self.spectrum) * self.scale
        img = torch.fft.irfft2(spec, s=(self.size, self.size), norm="ortho") / 4.0
        img = torch.einsum("bchw,dc->bdhw", img, self.colour)
        return torch.sigmoid(img + self.offset)

    def regularizer(self) -> torch.Tensor:
        return self.spectrum.new_zeros(self.spectrum.shape[0])
