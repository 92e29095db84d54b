"""Other tools' methods, run on our classifier beside ours: the real Lucent.

Lucent (``torch-lucent`` 0.1.8, the PyTorch port of Lucid) is the baseline the issue
asks for: its own ``render_vis``, its own class objective on the logits, its default
transforms (pad 12, jitter 8, scale 0.9-1.1, rotate -10..10, jitter 4), its FFT +
decorrelated-colour image and Adam 0.05, on EfficientNet-Lite0. Bench-only:

    pip install --no-deps -r bench/requirements.txt

(``--no-deps``: torch-lucent pins kornia<=0.4.1, which does not run on torch 2.14.)
:func:`install_shims` bridges the rest: lucent 0.1.8 calls ``kornia.get_rotation_matrix2d``
and ``kornia.warp_affine``, which moved to ``kornia.geometry.transform``, and imports
IPython for notebook display only (stubbed where IPython is not installed).
"""

from __future__ import annotations

import copy
import re
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dgncore.errors import InputError  # noqa: E402
from dgncore.models.classifiers import Classifier  # noqa: E402

LUCENT_STEPS = 256
LUCENT_SIZE = 224
LUCENT_LR = 0.05
#: a peer's name in a method list: lucent[STEPS][@SIZE], e.g. lucent, lucent64, lucent@128
PEER_NAME = re.compile(r"^lucent(\d+)?(?:@(\d+))?$")


def parse_peer(name: str) -> tuple[int, int] | None:
    """(steps, size) of a peer method name, or None where the name is not a peer."""
    m = PEER_NAME.match(name.strip())
    if m is None:
        return None
    steps, size = int(m.group(1) or LUCENT_STEPS), int(m.group(2) or LUCENT_SIZE)
    if not (1 <= steps <= 20_000 and 16 <= size <= 1024):
        raise InputError(f"peer {name!r}: steps must be 1-20000 and size 16-1024")
    return steps, size


def install_shims() -> None:
    """Make lucent 0.1.8 importable on a current kornia (and without IPython)."""
    try:
        import kornia
        import kornia.geometry.transform as kgt
    except ImportError as e:
        raise InputError(f"Lucent needs the bench extras: pip install --no-deps -r bench/requirements.txt ({e})") from e
    for name in ("get_rotation_matrix2d", "warp_affine"):
        if not hasattr(kornia, name):
            setattr(kornia, name, getattr(kgt, name))
    try:
        import IPython.display  # noqa: F401
    except ImportError:
        ipython = types.ModuleType("IPython")
        display = types.ModuleType("IPython.display")
        display.display = display.HTML = lambda *a, **k: None  # type: ignore[attr-defined]
        ipython.display = display  # type: ignore[attr-defined]
        sys.modules.update({"IPython": ipython, "IPython.display": display})


def lucent_available() -> bool:
    try:
        install_shims()
        import lucent.optvis.render  # noqa: F401
    except (ImportError, InputError):
        return False
    return True


class Normalized(nn.Module):
    """The classifier with its input normalisation inside (lucent's own ImageNet
    preprocessing stays off). Runs the BN-folded channels-last copy our methods use
    (``Classifier.fast``), so both sides pay the same classifier cost. Images are not
    resized: like any model under Lucent, it sees the transformed, padded image."""

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        fast = classifier.fast_model if classifier.fast else None
        self.channels_last = fast is not None
        # a copy: lucent hooks every module and never removes its hooks
        self.net = copy.deepcopy(fast if fast is not None else classifier.model).eval()
        self.register_buffer("mean", torch.tensor(classifier.mean, device=classifier.device).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(classifier.std, device=classifier.device).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return self.net(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)

    def logits_layer(self) -> str:
        """Lucent's name for the last linear layer (its names join module paths with _)."""
        linear = [name for name, m in self.named_modules() if isinstance(m, nn.Linear)]
        if not linear:
            raise InputError("Lucent's class objective needs a model whose logits come from a linear layer")
        return linear[-1].replace(".", "_")


@dataclass
class LucentRun:
    """Images and wall seconds at each step count asked for (one optimisation)."""

    #: steps -> (1, 3, size, size) float images in [0, 1], on the CPU
    images: dict[int, torch.Tensor]
    #: steps -> seconds from the start of ``render_vis`` until that step was done
    seconds: dict[int, float]
    size: int


def run_lucent(classifier: Classifier, class_index: int, seed: int = 0, steps: Sequence[int] = (LUCENT_STEPS,),
               size: int = LUCENT_SIZE, lr: float = LUCENT_LR) -> LucentRun:
    """Lucent's ``render_vis`` for one class of ``classifier``: ``channel(<logits layer>, c)``
    (the raw logit), FFT + decorrelated ``param.image(size)``, Lucent's standard transforms,
    Adam ``lr``. One run gives the image at every step count in ``steps`` (its thresholds);
    the first ``k`` steps of a longer run are exactly a ``k``-step run with the same seed."""
    install_shims()
    from lucent.optvis import objectives, param, render
    from lucent.optvis.param.spatial import device as lucent_device

    if torch.device(lucent_device).type != classifier.device.type:
        raise InputError(f"Lucent runs on {lucent_device} (its choice), the classifier on {classifier.device}")
    thresholds = tuple(sorted({int(s) for s in steps}))
    model = Normalized(classifier)
    objective = objectives.channel(model.logits_layer(), int(class_index))
    stamps: list[float] = []

    class TimedAdam(torch.optim.Adam):
        def step(self, closure=None):  # type: ignore[override]
            loss = super().step(closure)
            stamps.append(time.perf_counter())
            return loss

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # lucent's transforms draw from numpy's global generator
    t0 = time.perf_counter()
    images = render.render_vis(
        model, objective, param_f=lambda: param.image(size, fft=True, decorrelate=True),
        optimizer=lambda params: TimedAdam(params, lr=lr), transforms=None, thresholds=thresholds,
        preprocess=False, progress=False, show_image=False,
    )
    if len(images) != len(thresholds):
        raise RuntimeError("Lucent's render_vis stopped early")
    out = {s: torch.from_numpy(np.ascontiguousarray(img)).permute(0, 3, 1, 2).float().clamp(0, 1) for s, img in zip(thresholds, images)}
    return LucentRun(out, {s: stamps[s - 1] - t0 for s in thresholds}, size)


@dataclass
class Reached:
    """A Lucent run stopped, as our loop stops, at the first check whose 8-bit image
    reaches the target probability (or at the last step)."""

    image: torch.Tensor
    seconds: float
    steps: int
    p: float


def lucent_until(classifier: Classifier, class_index: int, p: float, seed: int = 0, steps: int = LUCENT_STEPS,
                 size: int = LUCENT_SIZE, check_every: int = 10) -> Reached:
    """Time to target for Lucent: one run with an image taken every ``check_every`` steps;
    the first whose 8-bit version has p_target >= ``p`` under ``classifier`` is the result,
    with the wall time to that step. The checks are scored after the run, so Lucent's
    time holds none of the check forwards that our loop's time holds (about one
    classifier forward per ``check_every`` steps)."""
    from dgncore.drawing.optimize import quantize

    checks = sorted({*range(check_every, steps + 1, check_every), steps})
    run = run_lucent(classifier, class_index, seed=seed, steps=checks, size=size)
    with torch.inference_mode():
        for s in checks:
            img = quantize(run.images[s])
            prob = float(torch.softmax(classifier.logits(img).float(), 1)[0, class_index])
            if prob >= p or s == checks[-1]:
                return Reached(img[0], run.seconds[s], s, prob)
    raise AssertionError("unreachable")


__all__ = ["PEER_NAME", "parse_peer", "Reached", "lucent_until", "install_shims", "lucent_available", "Normalized", "LucentRun", "run_lucent", "LUCENT_STEPS", "LUCENT_SIZE", "LUCENT_LR"]
