"""The built-in case: an audit of a model with a planted shortcut, and whether a decoder can draw its cue."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from dgncore.audit.intervention import InterventionConfig
from dgncore.audit.methods import DEFAULT_METHODS, parse_methods
from dgncore.audit.run import CueFn, run_audit
from dgncore.errors import InputError

#: the built-in models with a planted shortcut (:mod:`dgncore.audit.planted`)
BUILTIN_MODELS: tuple[str, ...] = ("planted", "planted-control")  # and the names planted.is_builtin accepts


def audit_builtin(out_dir: str | Path, model: Any = "planted", dataset: str | Path | None = None, **kwargs: Any) -> dict[str, Any]:
    """The audit of a built-in planted-shortcut model: ``planted``, ``planted-control``
    (the cue spread evenly), another cue kind or rate by name (``planted-sepia@0.7``, see
    :func:`dgncore.audit.planted.parse_builtin`), or any :class:`~dgncore.audit.planted.PlantedModel`,
    with the cue detector and the model's shortcut evidence in the report. The
    intervention runs unless ``intervention=None`` is passed.
    ``kwargs`` go to :func:`run_audit` (methods, seeds, steps, k, progress, cancel, ...)."""
    from dgncore.audit import planted

    if isinstance(model, str):
        model = planted.builtin(model)
    name = model.classifier_name
    clf = model.classifier()  # the TorchScript + sidecar path, as for a user's model
    kind = planted.cue_kind(model.config.cue)
    extra = {
        "builtin": {
            "name": name,
            "cue": kind.name,
            "description": (
                f"{len(model.config.classes)} shape classes at {model.config.size} px; the cue ({kind.description}) is on "
                f"{model.config.cue_rate_biased:.0%} of '{model.config.biased_class}' images and {model.config.cue_rate_other:.0%} of the others'"
                + (" (control: the same rate everywhere, so the cue carries no label information)" if model.config.is_control else "")
            ),
            "config": dataclasses.asdict(model.config),
            "train_seconds": model.info.get("train_seconds"),
            "shortcut_evidence": model.info.get("shortcut_evidence"),
            "model_file": str(model.pt),
        }
    }
    extra.update(kwargs.pop("extra", None) or {})
    kwargs.setdefault("model_name", name)
    kwargs.setdefault("intervention", InterventionConfig())
    methods = parse_methods(kwargs.get("methods", DEFAULT_METHODS))
    if "pretrained" in methods:
        from dgncore.drawing.registry import make_preset

        ckpt = kwargs.get("checkpoint") or make_preset("pretrained").checkpoint
        if ckpt and Path(ckpt).is_file() and _is_decoder(Path(ckpt)):
            if kwargs.get("progress"):
                kwargs["progress"]("checking that the decoder can draw the cue", 0, 1, phase="generate")
            gen = torch.Generator().manual_seed(7)
            labels = torch.arange(3)  # circle, square, triangle, each with the cue
            cued = planted.add_cue(model.config, planted.render_clean(model.config, labels, gen), gen)
            extra["decoder_expressibility"] = {"checkpoint": str(ckpt), **cue_expressibility(ckpt, cued, kind.score)}
    return run_audit(clf, out_dir, dataset=dataset or model.samples, cue=kind.score, cue_name=kind.score_name,
                     biased_class=model.config.biased_class, extra=extra, **kwargs)


def _is_decoder(path: Path) -> bool:
    from dgncore.prior.decoder import decoder_config

    try:
        decoder_config(path)
        return True
    except InputError:
        return False


def cue_expressibility(checkpoint: str | Path, images: torch.Tensor, cue: CueFn, steps: int = 150, lr: float = 0.05) -> dict[str, Any]:
    """Can the pretrained method's decoder draw the cue at all? Fit alpha - the only thing
    the method trains - to reconstruct ``images`` that carry the cue (MSE, Adam), then
    score the reconstructions. A decoder that cannot draw the cue makes a pretrained FAIL
    uninformative: the image prior, not the classifier, hid it."""
    from dgncore.prior.decoder import load_decoder
    from dgncore.prior.fitting import fit_codes

    decoder, mean_code, _meta = load_decoder(Path(checkpoint), "cpu")
    target = torch.nn.functional.interpolate(images.float(), size=decoder.config.out_size, mode="bilinear", antialias=True, align_corners=False)
    mse, recon = fit_codes(decoder, mean_code, target, steps=steps, lr=lr)
    return {
        "steps": steps,
        "mse": round(float(mse.mean()), 5),
        "cue_of_targets": [round(float(v), 5) for v in cue(target)],
        "cue_of_reconstructions": [round(float(v), 5) for v in cue(recon)],
    }
