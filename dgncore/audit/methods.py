"""The methods an audit draws with, and the settings each one uses there."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence


from dgncore.errors import InputError
from dgncore.models.classifiers import Classifier



DEFAULT_METHODS: tuple[str, ...] = ("pretrained", "untrained", "pixel")


#: every method an audit can draw with
AUDIT_METHODS: tuple[str, ...] = ("natural", "pretrained", "untrained", "pixel", "fourier")


DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)


#: the audit's early stop for ``pretrained`` (:func:`method_preset`), the one its figures were measured with
AUDIT_EARLY_STOP = 0.99


def method_preset(method: str, classifier: Classifier, steps: int | None = None, early_stop: float | None = None, checkpoint: str | Path | None = None):
    """The preset an audit uses for ``method``, or (None, reason) when it cannot run here.

    ``untrained`` and ``pixel`` make images at the classifier's input size (the
    untrained G at quarter width with as many stages as reach that size); ``pretrained``
    uses its decoder's 224 px (the classifier resizes). ``early_stop``: None keeps the
    preset's, and for ``pretrained`` (whose preset runs all its steps for the picture's
    sake) :data:`AUDIT_EARLY_STOP`: the audit shows the *first* image the classifier is
    sure of, i.e. the easiest route to the class, which is where a shortcut shows; pushed
    for the whole budget the images drift into saturated patterns. 0 turns it off."""
    from dgncore.runs import make_preset
    from dgncore.models.generators import GeneratorConfig

    size = classifier.input_size
    if method == "pretrained":
        preset = make_preset("pretrained", steps=steps, early_stop=AUDIT_EARLY_STOP, **({"checkpoint": str(checkpoint)} if checkpoint else {}))
        ckpt = Path(preset.checkpoint or "")
        if checkpoint and not ckpt.is_file():
            raise InputError(f"decoder checkpoint {str(ckpt)[:120]} does not exist")
        if not ckpt.is_file():
            return None, f"no decoder checkpoint at {ckpt} (train one with: python -m dgncore pretrain)"
        from dgncore.prior.decoder import decoder_config

        try:  # the decoder's own generator, so that the report shows what made the images
            gen = decoder_config(ckpt)
        except InputError:
            if checkpoint:
                raise InputError(f"{ckpt.name[:80]} is not a decoder written by: python -m dgncore pretrain") from None
            return None, f"{ckpt.name} is not a readable decoder file"
        preset = preset.replace(generator=gen)
    elif method == "untrained":
        stages = min(range(1, 7), key=lambda s: abs(math.log(GeneratorConfig(stages=s).native_size / max(size, 16))))
        gen = GeneratorConfig(width=0.25, stages=stages, out_size=max(16, min(size, 512)), rgb_last_stage=True)
        preset = make_preset("untrained", steps=steps, generator=gen)
    elif method in ("pixel", "fourier", "natural"):
        preset = make_preset(method, steps=steps, size=max(16, min(size, 512)))
    else:
        raise InputError(f"unknown audit method {method[:30]!r}: choose from {', '.join(AUDIT_METHODS)}")
    if early_stop is not None:
        preset = preset.replace(early_stop=early_stop if early_stop > 0 else None)
    return preset, None


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    if not isinstance(text, str):
        seeds = [int(s) for s in text]
    else:
        try:
            seeds = [int(s) for s in text.replace(" ", "").split(",") if s]
        except ValueError as e:
            raise InputError(f"bad seeds {text[:40]!r}: write a comma list like 0,1,2") from e
    if not seeds or len(seeds) > 20 or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise InputError("seeds must be 1-20 distinct non-negative whole numbers, e.g. 0,1,2")
    return seeds


def parse_methods(text: str | Sequence[str]) -> list[str]:
    items = [m.strip().lower() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    bad = [m for m in items if m not in AUDIT_METHODS]
    if not items or bad:
        raise InputError(f"bad methods {','.join(bad)[:40] or '(none)'}: choose from {', '.join(AUDIT_METHODS)}")
    return list(dict.fromkeys(items))
