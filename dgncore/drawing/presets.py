"""Named optimisation settings: the paper's Table 1, and measured CPU defaults.

``untrained-paper`` and ``pretrained-paper`` carry Table 1 and the original code's step
counts exactly. ``untrained``, ``pretrained``, ``pixel`` and ``fourier`` are the
defaults, chosen by measurement on 2 CPU cores (see README, "Presets"). Every field can
be overridden with :meth:`Preset.replace`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Literal

from dgncore.errors import InputError
from dgncore.paths import DEFAULT_DECODER, DEFAULT_STATS
from dgncore.models.generators import GeneratorConfig

Method = Literal["untrained", "pretrained", "pixel", "fourier", "natural"]
#: in the order front ends list them; the first is the default. ``natural`` leads because
#: it measured best of ours for people (bench/README.md, "Quality"): on 16 classes it was
#: not tuned on, a held-out network names 42/48 of its images (the real Lucent: 47/48; the
#: paper's methods far fewer), they sit near real photos of the class (median rank 2.5 of
#: 950; Lucent 1.0), in 0.38x Lucent's time. The paper's two methods follow, one click away.
METHODS: tuple[str, ...] = ("natural", "pretrained", "untrained", "fourier", "pixel")
DEFAULT_METHOD = METHODS[0]

MAX_STEPS = 20_000
MAX_OUT_SIZE = 512
MAX_RESTARTS = 16


@dataclass(frozen=True)
class Preset:
    name: str
    method: Method
    steps: int
    optimizer: Literal["adamax", "adam", "sgd"]
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.0
    nesterov: bool = False
    #: sigma of the feature noise (additive for untrained, multiplicative for pretrained)
    noise_sigma: float = 0.0
    #: lambda of Equation 2: weight on the other classes' ReLU activations
    penalty: float = 0.01
    #: weight of R(xi)
    reg_weight: float = 0.0
    #: the image returned: the last one, or the per-pixel median of the images taken
    #: every ``median_every`` steps over the last ``median_of`` such samples
    final: Literal["last", "median"] = "last"
    median_of: int = 10
    median_every: int = 1
    #: stop a row once its target probability reaches this (None: run all steps)
    early_stop: float | None = None
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    #: decoder checkpoint for the pretrained method
    checkpoint: str | None = None
    #: photo statistics (colour, amplitude spectrum) for the natural method
    photo_stats: str | None = None
    #: pretrained: alpha starts at mean_code * (1 + init_jitter * z), z ~ N(0, 1) drawn from
    #: the seed, so seeds give different images (0: every run starts at the mean code)
    init_jitter: float = 0.0
    #: independent starts per target, run in the same batch; each target returns the start
    #: whose saved image scores highest (and stops early as soon as one start reaches
    #: ``early_stop``). Measured for ``pretrained`` with the shipped decoder: one start
    #: jittered by 0.5 reached p >= 0.9 on 31 of 32 (class, seed) pairs in about half the
    #: time of 4 raced starts jittered by 2 (29 of 32), so its preset runs one (README, "Presets").
    restarts: int = 1
    #: with restarts: after this many steps only each target's best start so far goes on
    #: (0: every start runs until its target stops). Measured for ``pretrained`` with 4
    #: starts (8 classes, batch 1, two seeds): 10 takes 0.57-0.61x the median time to
    #: p >= 0.9 of 30 and reaches the same classes (README, "Presets").
    prune_after: int = 0
    #: the classifier sees each step's images padded, jittered, scaled and rotated at random
    #: (Lucid's transformation robustness; the saved image is never transformed)
    transforms: bool = False
    #: which transformations: "robust" (reflected border, +-5 degrees, +-10% scale) or
    #: "lucent" (Lucent's standard set; measured better for ``natural``, bench/README.md)
    transform_set: Literal["robust", "lucent"] = "robust"
    #: run the training pass under bf16 autocast where the device has native bf16 units
    #: (scores and saved images stay fp32). Measured per method (bench/README.md): same
    #: classes reached in 0.68x the time for ``pretrained``; ``untrained`` reached none
    bf16: bool = False

    def replace(self, **changes: Any) -> "Preset":
        """A copy with the given fields set exactly as given (``early_stop=None`` switches
        the early stop off); bad values are InputErrors. Front ends whose unset options are
        None go through :func:`dgncore.runs.make_preset`, which leaves those alone."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise InputError(f"unknown preset setting(s): {', '.join(sorted(unknown))}")
        out = dataclasses.replace(self, **changes)
        out.validate()
        return out

    def validate(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, numbers.Integral):
            raise InputError(f"steps must be a whole number, got {str(self.steps)[:30]!r}")
        for name in ("lr", "penalty", "reg_weight", "noise_sigma", "momentum", "eps", "init_jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise InputError(f"{name} must be a finite number, got {str(value)[:30]!r}")
        if not 1 <= self.steps <= MAX_STEPS:
            raise InputError(f"steps must be between 1 and {MAX_STEPS}, got {self.steps}")
        if not 0 < self.lr <= 10:
            raise InputError(f"learning rate must be in (0, 10], got {self.lr}")
        if self.early_stop is not None and not 0 < self.early_stop <= 1:
            raise InputError(f"early stop must be a probability in (0, 1], got {self.early_stop}")
        if not 16 <= self.generator.out_size <= MAX_OUT_SIZE:
            raise InputError(f"image size must be between 16 and {MAX_OUT_SIZE} pixels")
        if self.penalty < 0 or self.reg_weight < 0 or self.noise_sigma < 0 or self.init_jitter < 0:
            raise InputError("penalty, regulariser weight, noise and init jitter must not be negative")
        if isinstance(self.restarts, bool) or not isinstance(self.restarts, numbers.Integral) or not 1 <= self.restarts <= MAX_RESTARTS:
            raise InputError(f"restarts must be a whole number between 1 and {MAX_RESTARTS}, got {str(self.restarts)[:30]!r}")
        if isinstance(self.prune_after, bool) or not isinstance(self.prune_after, numbers.Integral) or not 0 <= self.prune_after <= MAX_STEPS:
            raise InputError(f"prune_after must be a whole number of steps between 0 and {MAX_STEPS}, got {str(self.prune_after)[:30]!r}")
        if self.transform_set not in ("robust", "lucent"):
            raise InputError(f"transform_set must be robust or lucent, got {str(self.transform_set)[:30]!r}")
        for name in ("transforms", "bf16"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be true or false, got {str(getattr(self, name))[:30]!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        # Paper, Table 1 and generative_net.ipynb: 10 epochs x 50 steps, batch 1.
        Preset(
            name="untrained-paper", method="untrained", steps=500, optimizer="adamax", lr=0.002,
            noise_sigma=2.0, reg_weight=0.01, penalty=0.01, final="last",
            generator=GeneratorConfig(width=1.0, stages=6, out_size=224, rgb_last_stage=True),
        ),
        # Paper, Table 1 and generative_net_with_trained_decoder.ipynb: 30 epochs x 40 steps,
        # median of the images after the last 10 epochs.
        Preset(
            name="pretrained-paper", method="pretrained", steps=1200, optimizer="sgd", lr=0.01,
            momentum=0.1, nesterov=True, noise_sigma=0.05, reg_weight=0.1, penalty=0.01,
            final="median", median_of=10, median_every=40, checkpoint=str(DEFAULT_DECODER),
        ),
        # CPU defaults (measured; README "Presets").
        Preset(
            name="untrained", method="untrained", steps=200, optimizer="adamax", lr=0.02,
            noise_sigma=0.0, reg_weight=0.01, penalty=0.01, final="last", early_stop=0.99,
            generator=GeneratorConfig(width=0.25, stages=6, out_size=224, rgb_last_stage=True),
        ),
        # No early stop: with the photo-trained decoder p passes 0.99 within 10-20 steps, long
        # before the picture forms; all 200 steps took Lite2 top-1 from 3/16 to 11/16 on the
        # tuning classes (bench/README.md, "Quality").
        Preset(
            name="pretrained", method="pretrained", steps=200, optimizer="adam", lr=0.3,
            noise_sigma=0.0, reg_weight=0.1, penalty=0.01, final="last", early_stop=None, checkpoint=str(DEFAULT_DECODER),
            init_jitter=0.5, restarts=1, prune_after=10, bf16=True,
        ),
        Preset(name="pixel", method="pixel", steps=200, optimizer="adam", lr=0.05, early_stop=0.99),
        Preset(name="fourier", method="fourier", steps=256, optimizer="adam", lr=0.05, early_stop=0.99, transforms=True),
        Preset(name="natural", method="natural", steps=128, optimizer="adam", lr=0.05, transforms=True, transform_set="lucent",
               photo_stats=str(DEFAULT_STATS)),
    ]
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a method name gives its CPU default."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise InputError(f"unknown method or preset {name[:40]!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[key]


# --------------------------------------------------------------------------- plain words


@dataclass(frozen=True)
class MethodInfo:
    """How a method is named to people: what they get first, the paper's name second."""

    label: str
    #: one plain sentence: what changes, and what the pictures tend to look like
    blurb: str


#: people-facing names of the methods (front ends list ``METHODS`` and look them up here;
#: a method without an entry is shown by its id, see :func:`method_info`)
METHOD_INFO: dict[str, MethodInfo] = {
    "pretrained": MethodInfo(
        "Image prior (paper, 4.2)",
        "A network trained to redraw photographs does the drawing; only the code it draws from changes. Soft, photo-like pictures.",
    ),
    "untrained": MethodInfo(
        "Random generator (paper, 4.1)",
        "A drawing network starts from random weights and learns this one picture. Bold shapes and colours.",
    ),
    "pixel": MethodInfo(
        "Raw pixels: the noise baseline",
        "The pixels themselves change. The classifier is convinced quickly, but the picture usually looks like noise to us.",
    ),
    "fourier": MethodInfo(
        "Fourier: Lucid-style",
        "Pixels change through their frequencies and colours, checked under small shifts and turns. Detailed textures; fast.",
    ),
    "natural": MethodInfo(
        "Photo-like: colours and detail of real photos",
        "Like Fourier, but with the colours and the balance of coarse and fine detail measured on real photographs.",
    ),
}


def method_info(method: str) -> MethodInfo:
    """The plain name and one-liner of ``method``; an id without an entry is its own label."""
    return METHOD_INFO.get(method) or MethodInfo(method, "")
