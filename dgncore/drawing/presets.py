"""What a run is set to (:class:`Preset`), and what a drawing method is (:class:`Method`).

The methods themselves, with their presets, live one family a file under
:mod:`dgncore.drawing.methods`; :mod:`dgncore.drawing.registry` lists them. Every field of
a preset can be changed with :meth:`Preset.replace` (exact) or :meth:`Preset.with_options`
(what a person asked for).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

from dgncore.errors import InputError
from dgncore.models.generator_config import GeneratorConfig

if TYPE_CHECKING:
    import torch


MAX_STEPS = 20_000
MAX_OUT_SIZE = 512
#: targets one batch may draw at once, and the largest seed
MAX_BATCH = 64
MAX_SEED = 2**63 - 1
MAX_RESTARTS = 16
MAX_VIEWS = 8


@dataclass(frozen=True)
class Preset:
    name: str
    #: the registered method that draws it (:mod:`dgncore.drawing.registry`)
    method: str
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
    #: ``early_stop``). One jittered start measured faster than raced starts for
    #: ``pretrained`` (bench/README.md, "Presets").
    restarts: int = 1
    #: with restarts: after this many steps only each target's best start so far goes on
    #: (0: every start runs until its target stops; bench/README.md, "Presets").
    prune_after: int = 0
    #: the classifier sees each step's images padded, jittered, scaled and rotated at random
    #: (Lucid's transformation robustness; the saved image is never transformed)
    transforms: bool = False
    #: which transformations: "robust" (reflected border, +-5 degrees, +-10% scale) or
    #: "lucent" (Lucent's standard set; measured better for ``natural``, bench/README.md)
    transform_set: Literal["robust", "lucent"] = "robust"
    #: run the training pass under bf16 autocast where the device has native bf16 units
    #: (scores and saved images stay fp32). It pays for some methods and not others
    #: (bench/README.md), so each preset says
    bf16: bool = False
    #: transformed views of each image the classifier sees per step, their losses averaged
    #: (several views a step, as MACO does; with ``transforms`` only)
    views: int = 1
    #: the learning rate over the run: "constant", or "cosine" (from ``lr`` at the first
    #: step, falling along half a cosine towards 0 after the last)
    lr_schedule: Literal["constant", "cosine"] = "constant"

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
        for name, lo, hi, what in (("restarts", 1, MAX_RESTARTS, ""), ("prune_after", 0, MAX_STEPS, " of steps"), ("views", 1, MAX_VIEWS, "")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= value <= hi:
                raise InputError(f"{name} must be a whole number{what} between {lo} and {hi}, got {str(value)[:30]!r}")
        if self.views > 1 and not self.transforms:
            raise InputError("several views per step need transforms on (each view is a different random transformation)")
        if self.lr_schedule not in ("constant", "cosine"):
            raise InputError(f"lr_schedule must be constant or cosine, got {str(self.lr_schedule)[:30]!r}")
        if self.transform_set not in ("robust", "lucent"):
            raise InputError(f"transform_set must be robust or lucent, got {str(self.transform_set)[:30]!r}")
        for name in ("transforms", "bf16"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be true or false, got {str(getattr(self, name))[:30]!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def with_options(self, steps: int | None = None, size: int | None = None, width: float | None = None, **overrides: Any) -> "Preset":
        """This preset with the options a person gave.

        ``steps``, ``size`` and ``width`` may be None (not given: the preset's value stays);
        every other keyword is set as given, so ``early_stop=None`` switches the early stop
        off, and so does ``early_stop=0`` (the command line's and the job queue's "0 =
        never"). Front ends pass only the options a person gave."""
        if size is not None or width is not None:
            g = self.generator
            try:
                gen = dataclasses.replace(g, out_size=g.out_size if size is None else int(size), width=g.width if width is None else float(width))
            except (TypeError, ValueError) as e:
                raise InputError(f"bad generator size or width: {e}") from e
            if not 0.05 <= gen.width <= 2:
                raise InputError(f"generator width must be between 0.05 and 2, got {gen.width:g}")
            overrides["generator"] = gen
        if steps is not None:
            overrides["steps"] = steps
        if overrides.get("early_stop") == 0 and not isinstance(overrides["early_stop"], bool):
            overrides["early_stop"] = None
        return self.replace(**overrides)


#: an image source (a :class:`dgncore.drawing.sources.ImageSource`) for ``n`` independent
#: rows on a device, built from a preset
SourceFn = Callable[[Preset, int, "torch.device"], "torch.nn.Module"]
#: the preset an audit uses at a classifier's input size: ``(size, steps, checkpoint)`` ->
#: (preset, None), or (None, why the method cannot run here)
AuditPresetFn = Callable[[int, "int | None", "str | None"], "tuple[Preset | None, str | None]"]


def sized_for_audit(preset: Preset):
    """An audit preset at the classifier's input size (16-512 px), for methods whose image is its own size."""

    def audit_preset(size: int, steps: int | None, checkpoint: str | None) -> tuple[Preset, None]:
        return preset.with_options(steps=steps, size=max(16, min(size, MAX_OUT_SIZE))), None

    return audit_preset


@dataclass(frozen=True)
class AuditUse:
    """How the bias audit uses a method."""

    preset: AuditPresetFn
    #: drawn when an audit names no methods
    default: bool = True
    #: its images are pasted by the intervention (a baseline whose images are adversarial
    #: noise would measure adversarial fragility, not bias)
    intervention: bool = True


@dataclass(frozen=True)
class Method:
    """One way to draw: its image source, its presets, how it is named to people, and how
    the audit uses it. Families of methods declare these in :mod:`dgncore.drawing.methods`."""

    name: str
    #: what people read first, and one plain sentence on what changes and how pictures look
    label: str
    blurb: str
    source: SourceFn
    #: the method's presets; the first is its default and bears its name
    presets: tuple[Preset, ...]
    audit: AuditUse

    def __post_init__(self) -> None:
        if not self.presets or self.presets[0].name != self.name or any(p.method != self.name for p in self.presets):
            raise ValueError(f"method {self.name}: its first preset must bear its name, and every preset must name it")


