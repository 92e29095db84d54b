"""The paper's generator G (Despraz et al. 2017, Table 2): ``untrained`` (section 4.1: G from
random weights, trained for this one picture) and ``pretrained`` (section 4.2: a decoder
trained to redraw images, frozen; only its input code changes).

``untrained-paper`` and ``pretrained-paper`` carry Table 1 and the original code's step
counts exactly; ``untrained`` and ``pretrained`` are our defaults, chosen by measurement
(bench/README.md, "Presets" and "Quality").
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING

from dgncore.drawing.presets import MAX_OUT_SIZE, AuditUse, Method, Preset
from dgncore.errors import InputError
from dgncore.models.generator_config import GeneratorConfig
from dgncore.paths import DEFAULT_DECODER

if TYPE_CHECKING:  # torch and the sources are imported when a picture is made: listing the methods needs neither
    import torch

    from dgncore.drawing.sources import ImageSource

#: the audit's early stop for ``pretrained``, the one its figures were measured with: the
#: audit shows the *first* image the classifier is sure of, the easiest route to the
#: class, which is where a shortcut shows (pushed for the whole budget the images drift
#: into saturated patterns)
AUDIT_EARLY_STOP = 0.99
#: the audit's starts per image for ``pretrained``, every one run until its target stops
#: (no pruning): a decoder trained for minutes on a small folder has starts that fall into
#: a flat picture or a wrong basin, and which start does cannot be told after a few steps;
#: 4 starts pruned after 10 steps left such traps on 1-3 of 3 seeds, 8 unpruned on none
#: (bench/prior_reach.py, docs/audit.md)
AUDIT_RESTARTS = 8


@functools.lru_cache(maxsize=2)
def cached_decoder(path: str, device: str):
    """The decoder file at ``path`` on ``device``, loaded once per process."""
    import torch

    from dgncore.prior.decoder import load_decoder

    # building the module draws random initial weights: keep that off the global RNG, or
    # a seed's first run in a process (decoder not cached yet) would start elsewhere
    with torch.random.fork_rng(devices=[]):
        return load_decoder(Path(path), torch.device(device))


def _untrained(preset: Preset, n: int, device: torch.device) -> ImageSource:
    from dgncore.drawing.sources import UntrainedSource

    return UntrainedSource(preset, n)


def _pretrained(preset: Preset, n: int, device: torch.device) -> ImageSource:
    if not preset.checkpoint:
        raise InputError("the pretrained method needs a decoder checkpoint")
    from dgncore.drawing.sources import PretrainedSource

    decoder, mean_code, _meta = cached_decoder(str(preset.checkpoint), str(device))
    return PretrainedSource(preset, n, decoder, mean_code.to(device))


def _untrained_for_audit(size: int, steps: int | None, checkpoint: str | None) -> tuple[Preset, None]:
    """G at quarter width with as many stages as reach the classifier's input size."""
    stages = min(range(1, 7), key=lambda s: abs(math.log(GeneratorConfig(stages=s).native_size / max(size, 16))))
    gen = GeneratorConfig(width=0.25, stages=stages, out_size=max(16, min(size, MAX_OUT_SIZE)), rgb_last_stage=True)
    return _UNTRAINED.with_options(steps=steps, generator=gen), None


def _pretrained_for_audit(size: int, steps: int | None, checkpoint: str | None) -> tuple[Preset | None, str | None]:
    """The decoder's own size (the classifier resizes) and :data:`AUDIT_EARLY_STOP`; (None,
    why) when there is no readable decoder and none was asked for."""
    from dgncore.prior.decoder import decoder_config

    preset = _PRETRAINED.with_options(steps=steps, early_stop=AUDIT_EARLY_STOP, restarts=AUDIT_RESTARTS, prune_after=0,
                                      **({"checkpoint": str(checkpoint)} if checkpoint else {}))
    ckpt = Path(preset.checkpoint or "")
    if checkpoint and not ckpt.is_file():
        raise InputError(f"decoder checkpoint {str(ckpt)[:120]} does not exist")
    if not ckpt.is_file():
        return None, f"no decoder checkpoint at {ckpt} (train one with: python -m dgncore pretrain)"
    try:  # the decoder's own generator, so that the report shows what made the images
        gen = decoder_config(ckpt)
    except InputError:
        if checkpoint:
            raise InputError(f"{ckpt.name[:80]} is not a decoder written by: python -m dgncore pretrain") from None
        return None, f"{ckpt.name} is not a readable decoder file"
    return preset.replace(generator=gen), None


_UNTRAINED = Preset(
    name="untrained", method="untrained", steps=200, optimizer="adamax", lr=0.02,
    noise_sigma=0.0, reg_weight=0.01, penalty=0.01, final="last", early_stop=0.99,
    generator=GeneratorConfig(width=0.25, stages=6, out_size=224, rgb_last_stage=True),
)
# Paper, Table 1 and generative_net.ipynb: 10 epochs x 50 steps, batch 1.
_UNTRAINED_PAPER = Preset(
    name="untrained-paper", method="untrained", steps=500, optimizer="adamax", lr=0.002,
    noise_sigma=2.0, reg_weight=0.01, penalty=0.01, final="last",
    generator=GeneratorConfig(width=1.0, stages=6, out_size=224, rgb_last_stage=True),
)
# No early stop: with the photo-trained decoder p passes 0.99 within 10-20 steps, long
# before the picture forms (bench/README.md, "Quality").
_PRETRAINED = Preset(
    name="pretrained", method="pretrained", steps=200, optimizer="adam", lr=0.3,
    noise_sigma=0.0, reg_weight=0.1, penalty=0.01, final="last", early_stop=None, checkpoint=str(DEFAULT_DECODER),
    init_jitter=0.5, restarts=1, prune_after=10, bf16=True,
)
# Paper, Table 1 and generative_net_with_trained_decoder.ipynb: 30 epochs x 40 steps,
# median of the images after the last 10 epochs.
_PRETRAINED_PAPER = Preset(
    name="pretrained-paper", method="pretrained", steps=1200, optimizer="sgd", lr=0.01,
    momentum=0.1, nesterov=True, noise_sigma=0.05, reg_weight=0.1, penalty=0.01,
    final="median", median_of=10, median_every=40, checkpoint=str(DEFAULT_DECODER),
)

PRETRAINED = Method(
    "pretrained", "Image prior (paper, 4.2)",
    "A network trained to redraw photographs does the drawing; only the code it draws from changes. Soft, photo-like pictures.",
    _pretrained, (_PRETRAINED, _PRETRAINED_PAPER), AuditUse(_pretrained_for_audit, default=True),
)
UNTRAINED = Method(
    "untrained", "Random generator (paper, 4.1)",
    "A drawing network starts from random weights and learns this one picture. Bold shapes and colours.",
    _untrained, (_UNTRAINED, _UNTRAINED_PAPER), AuditUse(_untrained_for_audit, default=True),
)
