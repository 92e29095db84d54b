"""Dataset exemplars: the real images that most (and least) excite a class or a filter.

Distill's and OpenAI Microscope's galleries put the dataset images that drive a unit
beside its visualisation: a generated image is a hypothesis, the exemplars are the
evidence it can be checked against. :func:`build_index` runs the classifier once over
an image folder and keeps, per image, the logits and the channel means of chosen
layers; :meth:`ExemplarIndex.top_k` / :meth:`ExemplarIndex.bottom_k` then rank the
folder for any class, compound class, filter or group target without running the model
again.

The index is cached as ``.npz`` under ``$DGN_CACHE/exemplars`` (default
``~/.cache/dgn-explorer/exemplars``), named by a hash of the model (its weights, input
size, normalisation and classes) and of the folder's contents (relative paths and file
bytes). Layers asked for later are computed and added to the same file.

Folders: ``DIR/<class>/<image>`` (labels are the sub-folder names) and images directly
in ``DIR`` (label ``""``) are both indexed. Every image goes through the guarded loader;
an unreadable one is an :class:`~dgncore.errors.InputError` naming it (or is skipped
with ``skip_unreadable=True``, and listed in ``index.skipped``).
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from dgncore.cancel import Cancel, cancel_fn
from dgncore.data import (
    MAX_IMAGES,
    folder_key,
    list_images,
    load_for_model,
    write_bytes,
)
from dgncore.drawing.objectives import Target, parse_target
from dgncore.errors import InputError
from dgncore.models.classifiers import Classifier, model_key
from dgncore.paths import cache_dir

INDEX_VERSION = 1

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Exemplar:
    """One ranked image: its path (absolute), folder label, value for the target, and
    what the classifier predicts for it."""

    path: Path
    rel: str
    label: str
    value: float
    predicted: str
    p_predicted: float
    index: int


@dataclass
class ExemplarIndex:
    root: Path
    #: paths relative to ``root``, POSIX style, sorted
    paths: list[str]
    #: folder label per image ("" for images directly in ``root``)
    labels: list[str]
    #: the model's class names
    classes: list[str]
    #: (N, n_classes) float32 logits
    logits: np.ndarray
    #: layer name -> (N, channels) float32 channel means
    layers: dict[str, np.ndarray] = field(default_factory=dict)
    key: str = ""
    cache_file: Path | None = None
    skipped: list[str] = field(default_factory=list)
    truncated: bool = False
    classifier: Classifier | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def probabilities(self) -> np.ndarray:
        z = self.logits - self.logits.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    @property
    def predicted(self) -> np.ndarray:
        return self.logits.argmax(1)

    def _target(self, target: Target | str) -> Target:
        if isinstance(target, Target):
            return target
        if self.classifier is None:
            raise InputError("this exemplar index has no classifier attached: pass a parsed target")
        return parse_target(target, self.classifier)

    def values(self, target: Target | str) -> np.ndarray:
        """(N,) the target's value per image: the (weighted) raw logit of a class target,
        the (weighted) channel mean of a filter or group target."""
        t = self._target(target)
        if t.is_class:
            return (self.logits[:, list(t.units)] * np.asarray(t.weights, dtype=np.float32)).sum(1)
        if t.kind == "neuron":
            raise InputError("exemplars rank images by channel means: use a filter: or group: target, not a single neuron")
        if t.layer not in self.layers:
            raise InputError(f"layer {str(t.layer)[:60]!r} is not in this exemplar index; build it with layers=[{t.layer!r}]")
        return (self.layers[t.layer][:, list(t.units)] * np.asarray(t.weights, dtype=np.float32)).sum(1)

    def _ranked(self, target: Target | str, k: int, descending: bool, label: str | None, exclude_label: str | None,
                skip: Iterable[int] = ()) -> list[Exemplar]:
        if k < 0:
            raise InputError("k must not be negative")
        v = self.values(target)
        mask = np.ones(len(v), dtype=bool)
        mask[[i for i in skip if 0 <= i < len(v)]] = False
        labels = np.asarray(self.labels, dtype=object)
        if label is not None:
            mask &= labels == label
        if exclude_label is not None:
            mask &= labels != exclude_label
        idx = np.nonzero(mask)[0]
        order = idx[np.argsort(-v[idx] if descending else v[idx], kind="stable")][:k]
        probs, pred = self.probabilities, self.predicted
        return [
            Exemplar(self.root / self.paths[i], self.paths[i], self.labels[i], float(v[i]), self.classes[int(pred[i])], float(probs[i, pred[i]]), int(i))
            for i in order
        ]

    def top_k(self, target: Target | str, k: int = 8, label: str | None = None, exclude_label: str | None = None) -> list[Exemplar]:
        """The ``k`` images with the highest value for ``target`` (optionally only those with
        folder ``label``, or all but ``exclude_label``: the most class-like images of
        *other* classes are where a shortcut shows first)."""
        return self._ranked(target, k, True, label, exclude_label)

    def bottom_k(self, target: Target | str, k: int = 8, label: str | None = None, exclude_label: str | None = None,
                 skip: Iterable[int] = ()) -> list[Exemplar]:
        """The ``k`` images with the lowest value for ``target``, leaving out the images whose
        :attr:`Exemplar.index` is in ``skip`` (pass the top row, so that in a small folder an
        image is not shown as both most and least like the target)."""
        return self._ranked(target, k, False, label, exclude_label, skip)

    def extremes(self, target: Target | str, k: int = 4) -> tuple[list[Exemplar], list[Exemplar]]:
        """The rows "most like the target" and "least like it": up to ``k`` images each, and
        never the same image in both (a folder of fewer than ``2k`` images is split in half,
        the extra one going to the top)."""
        top = self.top_k(target, min(k, (len(self) + 1) // 2))
        return top, self.bottom_k(target, k, skip=[e.index for e in top])

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "version": np.asarray(INDEX_VERSION),
            "key": np.asarray(self.key),
            "paths": np.asarray(self.paths, dtype=str),
            "labels": np.asarray(self.labels, dtype=str),
            "classes": np.asarray(self.classes, dtype=str),
            "logits": self.logits.astype(np.float32),
            "skipped": np.asarray(self.skipped, dtype=str),
            "truncated": np.asarray(self.truncated),
        }
        for i, (name, a) in enumerate(sorted(self.layers.items())):
            arrays[f"layer_name_{i}"] = np.asarray(name)
            arrays[f"layer_{i}"] = a.astype(np.float32)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        write_bytes(buf.getvalue(), path)

    @classmethod
    def load(cls, path: Path, root: Path) -> "ExemplarIndex | None":
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["version"]) != INDEX_VERSION:
                    return None
                layers = {}
                i = 0
                while f"layer_name_{i}" in z:
                    layers[str(z[f"layer_name_{i}"])] = z[f"layer_{i}"]
                    i += 1
                return cls(
                    root, [str(p) for p in z["paths"]], [str(p) for p in z["labels"]], [str(c) for c in z["classes"]],
                    z["logits"], layers, str(z["key"]), path, [str(s) for s in z["skipped"]], bool(z["truncated"]),
                )
        except (OSError, ValueError, KeyError):
            return None


# --------------------------------------------------------------------------- hashing

_lock = threading.Lock()


# --------------------------------------------------------------------------- building


@torch.inference_mode()
def _compute(classifier: Classifier, root: Path, paths: list[str], layers: Sequence[str], batch_size: int, skip_unreadable: bool,
             progress: ProgressFn | None, cancel: Callable[[], bool]) -> tuple[list[int], np.ndarray, dict[str, np.ndarray], list[str]]:
    kept: list[int] = []
    logits: list[np.ndarray] = []
    acts: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    skipped: list[str] = []
    size = classifier.input_size
    for start in range(0, len(paths), batch_size):
        if cancel():
            raise InputError("indexing was cancelled")
        imgs, rows = [], []
        for i in range(start, min(start + batch_size, len(paths))):
            try:
                imgs.append(load_for_model(root / paths[i], size))
                rows.append(i)
            except InputError as e:
                if not skip_unreadable:
                    raise InputError(f"in {root.name[:60]}/{paths[i][:100]}: {e}") from e
                skipped.append(paths[i])
        if imgs:
            z, a = classifier.logits_and_activations(torch.stack(imgs), list(layers))
            logits.append(z.float().cpu().numpy())
            for name in layers:
                out = a[name].float()
                acts[name].append((out.mean((2, 3)) if out.dim() == 4 else out.reshape(out.shape[0], -1)).cpu().numpy())
            kept.extend(rows)
        if progress is not None:
            progress(min(start + batch_size, len(paths)), len(paths))
    n_cls = classifier.n_classes
    return (
        kept,
        np.concatenate(logits) if logits else np.zeros((0, n_cls), np.float32),
        {k: np.concatenate(v) if v else np.zeros((0, 0), np.float32) for k, v in acts.items()},
        skipped,
    )


def build_index(
    classifier: Classifier,
    folder: str | Path,
    layers: Sequence[str] = (),
    batch_size: int = 32,
    max_images: int = MAX_IMAGES,
    skip_unreadable: bool = False,
    use_cache: bool = True,
    cache: str | Path | None = None,
    progress: ProgressFn | None = None,
    cancel: Cancel = None,
) -> ExemplarIndex:
    """The exemplar index of ``folder`` for ``classifier`` (from the cache when the same
    model and the same files were indexed before); ``layers`` are layer names from
    ``classifier.layers()`` whose channel means are kept too."""
    root = Path(folder)
    paths, labels, truncated = list_images(root, max_images)
    layers = list(dict.fromkeys(layers))
    if layers:
        known = {info.name for info in classifier.layers()}
        bad = [name for name in layers if name not in known]
        if bad:
            if not known:
                raise InputError(f"model {classifier.name} has no layers that can be indexed (TorchScript models give class exemplars only)")
            raise InputError(f"unknown layer {bad[0][:60]!r}; list them with: python -m dgncore layers")
    is_cancelled = cancel_fn(cancel)
    key = f"{model_key(classifier)}-{folder_key(root, paths)}-{'skip' if skip_unreadable else 'strict'}"
    path = Path(cache) if cache is not None else cache_dir("exemplars") / f"{key}.npz"
    if use_cache and path.is_file():
        index = ExemplarIndex.load(path, root)
        if index is not None and index.key == key:
            index.classifier = classifier
            missing = [name for name in layers if name not in index.layers]
            if missing:
                kept_paths = [p for p in index.paths]
                _kept, _z, acts, _s = _compute(classifier, root, kept_paths, missing, batch_size, False, progress, is_cancelled)
                index.layers.update(acts)
                index.save(path)
            return index
    kept, logits, acts, skipped = _compute(classifier, root, paths, layers, batch_size, skip_unreadable, progress, is_cancelled)
    if not kept:
        raise InputError(f"no readable images in {root.name[:80]}")
    index = ExemplarIndex(root, [paths[i] for i in kept], [labels[i] for i in kept], list(classifier.classes), logits, acts, key, path, skipped, truncated, classifier)
    if use_cache:
        index.save(path)
    return index


__all__ = ["Exemplar", "ExemplarIndex", "build_index"]
