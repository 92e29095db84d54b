"""Does a folder of images match a classifier's classes? The check every audit starts with."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from dgncore.data import IMAGE_SUFFIXES
from dgncore.errors import InputError
from dgncore.models.classifiers import Classifier, imagenet_wnids


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


@dataclass(frozen=True)
class DatasetMatch:
    """An ImageFolder checked against a model: folder name -> class index."""

    root: Path
    folders: list[str]
    class_of: dict[str, int]
    files: dict[str, list[Path]]


def folder_classes(names: Sequence[str], classifier: Classifier) -> dict[str, int | None]:
    """The class each folder name means for ``classifier`` (None: no class): a class name or
    one of its synonyms (case and ``_``/``-`` ignored), a class index, or an ImageNet
    WordNet id for 1000-class models."""
    lookup: dict[str, int] = {}
    for i, d in enumerate(classifier.descriptions):
        for syn in d.split(","):
            lookup.setdefault(_norm(syn), i)
    for i, c in enumerate(classifier.classes):  # the short name wins over another class's synonym
        lookup[_norm(c)] = i
    wnids = {w: i for i, w in enumerate(imagenet_wnids())} if classifier.n_classes == 1000 else {}
    out: dict[str, int | None] = {}
    for name in names:
        key = _norm(name)
        if key in lookup:
            out[name] = lookup[key]
        elif key.isdigit() and int(key) < classifier.n_classes:
            out[name] = int(key)
        else:
            out[name] = wnids.get(name)
    return out


def check_dataset(folder: str | Path, classifier: Classifier) -> DatasetMatch:
    """Validate an ImageFolder (``DIR/<class>/<image>``) for ``classifier``: it exists,
    has class sub-folders, each holds image files, and each folder name is one of the
    model's classes (name, case and ``_``/``-`` ignored; a class index; or an ImageNet
    WordNet id for 1000-class models). Anything else is an InputError naming the problem."""
    root = Path(folder)
    if not root.exists():
        raise InputError(f"dataset folder {str(root)[:120]} does not exist")
    if not root.is_dir():
        raise InputError(f"dataset {root.name[:80]} is not a folder (expected DIR/<class>/<image>.png)")
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subs:
        loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        what = f"{len(loose)} images but no class sub-folders" if loose else "no class sub-folders"
        raise InputError(f"dataset folder {root.name[:80]} has {what} (expected ImageFolder layout: DIR/<class>/<image>.png)")
    files: dict[str, list[Path]] = {}
    for sub in subs:
        entries = [p for p in sub.iterdir() if p.is_file() and not p.name.startswith(".")]
        imgs = sorted(p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES)
        if not imgs:
            if entries:
                raise InputError(f"class folder {sub.name[:60]!r} in {root.name[:60]} holds no images: {len(entries)} other file(s), e.g. {entries[0].name[:40]!r}")
            raise InputError(f"class folder {sub.name[:60]!r} in {root.name[:60]} is empty")
        files[sub.name] = imgs
    class_of = {name: i for name, i in folder_classes(list(files), classifier).items() if i is not None}
    unmatched = [name for name in files if name not in class_of]
    if unmatched:
        shown = ", ".join(repr(n[:40]) for n in unmatched[:4]) + (f" and {len(unmatched) - 4} more" if len(unmatched) > 4 else "")
        some = ", ".join(classifier.classes[:6]) + (", ..." if classifier.n_classes > 6 else "")
        raise InputError(f"class folder(s) {shown} in {root.name[:60]} match no class of {classifier.name[:60]} (its classes: {some})")
    seen: dict[int, str] = {}
    for name, idx in class_of.items():
        if idx in seen:
            raise InputError(f"class folders {seen[idx][:40]!r} and {name[:40]!r} in {root.name[:60]} both mean class {classifier.classes[idx]!r}")
        seen[idx] = name
    return DatasetMatch(root, list(files), class_of, files)


