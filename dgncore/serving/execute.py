"""Running one job: a generation through :func:`dgncore.runs.generate` or an audit, with previews, cancelling and the job log."""

from __future__ import annotations

import io
import logging
import time
from typing import Any, Callable

from dgncore.errors import InputError, one_line
from dgncore.limits import Limits
from dgncore.serving.specs import AuditSpec, JobSpec
from dgncore.serving.status import MAX_HISTORY, JobStatus

log = logging.getLogger(__name__)

PREVIEW_SIDE = 256

PREVIEW_EVERY_S = 1.0


def preview_pngs(images, side: int = PREVIEW_SIDE) -> list[bytes]:
    """(B, 3, S, S) images in [0, 1] -> small PNGs, one per row."""
    from PIL import Image

    from dgncore.data import to_uint8

    out = []
    for img in images:
        im = Image.fromarray(to_uint8(img))
        if max(im.size) > side:
            im = im.resize((side, side), Image.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def execute(
    spec: JobSpec | AuditSpec,
    settings: Limits,
    report: Callable[[dict[str, Any]], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run one job: load the classifier, parse the targets, :func:`generate`. Returns
    ``{"records": [...], "cancelled": bool}``. ``report`` gets ``{"step", "total",
    "probs", "preview"?}`` at every check (a preview at most once a second); ``cancel``
    is asked every step (a job past ``settings.job_timeout`` is cancelled too).
    An :class:`AuditSpec` goes to :func:`execute_audit`."""
    from dgncore.models.classifiers import load_classifier
    from dgncore.runs import generate, parse_targets

    if isinstance(spec, AuditSpec):
        return execute_audit(spec, settings, report, cancel)
    preset = spec.validate(settings)
    should_stop = _Stopper(settings, cancel)

    last_preview = 0.0

    def progress(p) -> None:
        nonlocal last_preview
        if report is None:
            return
        info: dict[str, Any] = {
            "step": p.step, "total": p.total, "probs": list(p.checks[-1][1]) if p.checks else [],
            "activation": p.activation[-MAX_HISTORY:], "checks": [(s, list(c)) for s, c in p.checks], "done": list(p.done),
        }
        now = time.monotonic()
        if now - last_preview >= PREVIEW_EVERY_S or p.step >= p.total or all(p.done):
            last_preview = now
            info["preview"] = preview_pngs(p.images)
        report(info)

    if should_stop():
        return {"records": [], "cancelled": True}
    device = spec.device if spec.device != "auto" else settings.device
    try:
        clf = load_classifier(spec.model, weights=spec.weights, device=device, allow_torchscript=settings.allow_torchscript)
    except InputError:
        raise
    except Exception as e:  # a broken install or file on this worker, not the request: say which, the worker goes on
        raise RuntimeError(f"this worker cannot load the model {spec.model_name or spec.model}: {type(e).__name__}: {one_line(e)}") from e
    targets = parse_targets(list(spec.targets), clf)
    out_dir = spec.resolve_out_dir(settings)
    records = generate(
        clf, targets, preset, out_dir, seed=spec.seed, model=spec.model_name or spec.model,
        progress=progress, cancel=should_stop, reuse=spec.reuse, keep_frames=spec.gif,
    )
    if spec.gif:
        from dgncore.results import save_gif

        for r in records:
            if r.get("_frames"):
                save_gif(out_dir, r, r["_frames"])
    records = [{k: v for k, v in r.items() if not k.startswith("_")} for r in records]
    cancelled = any(r.get("cancelled") for r in records)
    out: dict[str, Any] = {"records": records, "cancelled": cancelled}
    if should_stop.timed_out:
        out["error"] = f"the job ran longer than {settings.job_timeout} s and was stopped; what it had is saved"
    return out


class _Stopper:
    """``cancel()``, or true once the job has run past ``settings.job_timeout``."""

    def __init__(self, settings: Limits, cancel: Callable[[], bool] | None) -> None:
        self.limit, self.cancel = settings.job_timeout, cancel
        self.started = time.monotonic()
        self.timed_out = False

    def __call__(self) -> bool:
        if self.limit and time.monotonic() - self.started > self.limit:
            self.timed_out = True
            return True
        return bool(self.cancel and self.cancel())


def execute_audit(
    spec: AuditSpec,
    settings: Limits,
    report: Callable[[dict[str, Any]], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run one audit job; the report is ``report.json`` in its out_dir. Returns
    ``{"records": [], "cancelled": bool, "report": "report.json"?}``. ``report`` gets
    ``{"stage", "step", "total"}``. A cancelled or timed-out audit writes no report (the
    images it finished are kept and reused by the next run with the same settings)."""
    from dgncore.audit.pipeline import audit
    from dgncore.models.classifiers import load_classifier

    spec.validate(settings)
    should_stop = _Stopper(settings, cancel)

    def progress(p: Any) -> None:
        if report is not None:
            report({"stage": p.stage, "step": p.done, "total": p.total, "phase": p.phase, "phase_no": p.phase_no, "phases": p.phases,
                    "left_s": p.phase_left_s})

    if should_stop():
        return {"records": [], "cancelled": True}
    out_dir = spec.resolve_out_dir(settings)
    from dgncore.audit.intervention import InterventionConfig

    common: dict[str, Any] = dict(classes=list(spec.classes) or None, methods=list(spec.methods), seeds=list(spec.seeds), k=spec.k,
                                  steps=spec.steps, samples=spec.samples, exemplars=spec.exemplars, progress=progress, cancel=should_stop,
                                  train_prior=spec.train_prior, prior_steps=spec.prior_steps,
                                  intervention=InterventionConfig() if spec.intervene else None)
    try:
        if spec.builtin is not None:
            audit(spec.builtin, out_dir, dataset=spec.dataset, **common)
        else:
            clf = load_classifier(spec.model, weights=spec.weights, device=spec.device if spec.device != "auto" else settings.device,
                                  allow_torchscript=settings.allow_torchscript)
            audit(clf, out_dir, dataset=spec.dataset, model_name=spec.model_name or spec.model, **common)
    except InputError:
        if not should_stop():
            raise
        out: dict[str, Any] = {"records": [], "cancelled": True}
        if should_stop.timed_out:
            out["error"] = f"the audit ran longer than {settings.job_timeout} s and was stopped; the images it finished are kept"
        return out
    return {"records": [], "cancelled": False, "report": "report.json"}


def log_job(settings: Limits, spec: JobSpec | AuditSpec, st: JobStatus) -> None:
    """One JSON line per finished job in ``settings.job_log`` (for operators and the load
    test): when it was submitted, started and finished, what it made."""
    if settings.job_log is None:
        return
    import json

    entry = {
        "job": st.job_id, "state": st.state, "submitted": st.submitted, "started": st.started, "finished": st.finished,
        "queue_wait": st.queue_wait, **spec.summary(), "out_dir": spec.out_dir, "files": [r.get("png") for r in st.records], "error": st.error,
    }
    try:
        settings.job_log.parent.mkdir(parents=True, exist_ok=True)
        with open(settings.job_log, "a", encoding="utf-8") as f:  # one short O_APPEND write per line
            f.write(json.dumps(entry) + "\n")
    except OSError as e:
        log.warning("cannot write the job log %s: %s", settings.job_log, e)
