"""The held-out judge: does a generated image transfer, and does it look like a photo?

``/work/shared/evaluation.md`` scores an image on separate axes. This module holds the
two that need a model that took no part in the optimisation, EfficientNet-Lite2:

- **transfer**: the target's rank and probability under Lite2 (top-1 / top-5);
- **plausibility** (MACO, Fel et al. 2023): embed the image with Lite2's penultimate
  features (global-pooled, before the classifier layer, L2-normalised) and rank the
  target class's real photo among every photo of a :class:`PhotoBank` by cosine
  similarity; 1 = its own class's photo is the nearest of all;
- and, from the same embeddings, **diversity** across seeds (:func:`diversity`).

A photo bank is embedded once and cached under ``$DGN_CACHE/plausibility`` (default
``~/.cache/dgn-explorer/plausibility``), keyed by the judge's weights and the folder's
file list with sizes and modification times. Photos are mapped to ImageNet classes by the
WordNet id their names start with (``n01440764_tench.JPEG``), through timm's synset list.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dgncore.data import image_files, load_for_model, write_bytes
from dgncore.errors import InputError
from dgncore.models.classifiers import (
    Classifier,
    imagenet_wnids,
    load_classifier,
    model_key,
)
from dgncore.paths import DEFAULT_PHOTOS, SHIPPED_BANK, cache_dir

JUDGE_MODEL = "efficientnet_lite2"
#: the photo folder beside a checkout: ``<repo>/../shared/imagenet-samples``
#: bump when the embedding changes (preprocessing, layer), so old caches are not read
EMBED_VERSION = 1
#: two images closer than this cosine distance count as near-duplicates: a photo shifted
#: or mirrored sits well inside it, two different photos well outside (bench/README.md)
NEAR_DUPLICATE = 0.1

ProgressFn = Callable[[int, int], None]


@functools.lru_cache(maxsize=2)
def load_judge(device: str = "auto") -> Classifier:
    """EfficientNet-Lite2, loaded once per process (and device)."""
    return load_classifier(JUDGE_MODEL, device=device)


def _batch(images: torch.Tensor) -> torch.Tensor:
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] != 3:
        raise InputError(f"expected images of shape (B, 3, H, W) in [0, 1], got {tuple(images.shape)}")
    return images.float()


@torch.inference_mode()
def logits_and_embeddings(images: torch.Tensor, classifier: Classifier | None = None, batch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass of the judge over [0, 1] images: (B, classes) logits and (B, D)
    L2-normalised penultimate features, both float32 on the CPU. The judge must be a timm
    model (``forward_features`` / ``forward_head``)."""
    clf = classifier or load_judge()
    images = _batch(images)
    fast = clf.fast_model if clf.fast else None
    model = fast if fast is not None else clf.model
    if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
        raise InputError(f"{clf.name} cannot judge plausibility: it needs timm's forward_features / forward_head")
    logits, embs = [], []
    for start in range(0, images.shape[0], batch_size):
        x = clf.preprocess(images[start : start + batch_size])
        if fast is not None:
            x = x.contiguous(memory_format=torch.channels_last)
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True).flatten(1)
        logits.append(model.forward_head(feats).float().cpu())
        embs.append(F.normalize(pre.float(), dim=1).cpu())
    return torch.cat(logits), torch.cat(embs)


def embed(images: torch.Tensor, classifier: Classifier | None = None, batch_size: int = 16) -> torch.Tensor:
    """(B, D) L2-normalised penultimate features of the judge for [0, 1] images."""
    return logits_and_embeddings(images, classifier, batch_size)[1]


# --------------------------------------------------------------------------- photos


def photo_class(path: str | Path, wnids: Sequence[str] | None = None) -> int | None:
    """The class index of a photo named ``<wnid>_<anything>`` (None for any other name)."""
    index = _wnid_index(tuple(wnids) if wnids is not None else imagenet_wnids())
    return index.get(Path(path).name.split("_", 1)[0].split(".", 1)[0])


@functools.lru_cache(maxsize=4)
def _wnid_index(wnids: tuple[str, ...]) -> dict[str, int]:
    return {w: i for i, w in enumerate(wnids)}


@dataclass
class PhotoBank:
    """Every photo of a folder, embedded by the judge, with its class (None: unknown)."""

    root: Path
    #: paths relative to ``root``, POSIX style, sorted
    paths: list[str]
    classes: list[int | None]
    #: (N, D) L2-normalised float32 embeddings
    embeddings: torch.Tensor
    key: str = ""
    cache_file: Path | None = None
    _by_class: dict[int, list[int]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for i, c in enumerate(self.classes):
            if c is not None:
                self._by_class.setdefault(c, []).append(i)

    def __len__(self) -> int:
        return len(self.paths)

    def photos(self, class_index: int) -> list[Path]:
        """The bank's photos of a class (absolute paths; empty where it has none)."""
        return [self.root / self.paths[i] for i in self._by_class.get(int(class_index), [])]

    def ranks(self, embeddings: torch.Tensor, classes: Sequence[int]) -> list[int | None]:
        """Per embedding: the rank of the nearest photo of its class among all photos by
        cosine similarity (1 = nearest; ties count in its favour), or None where the bank
        has no photo of the class."""
        if embeddings.shape[0] != len(classes):
            raise ValueError(f"{embeddings.shape[0]} embeddings for {len(classes)} classes")
        sims = embeddings.float() @ self.embeddings.T
        out: list[int | None] = []
        for row, c in zip(sims, classes):
            own = self._by_class.get(int(c))
            if not own:
                out.append(None)
                continue
            best = row[own].max()
            out.append(int((row > best).sum()) + 1)
        return out

    def nearest_classes(self, embeddings: torch.Tensor, k: int = 3) -> list[list[int]]:
        """Per embedding: the classes of its ``k`` nearest photos, nearest first, each class
        once (photos of unknown class are passed over)."""
        order = (embeddings.float() @ self.embeddings.T).argsort(dim=1, descending=True)
        out = []
        for row in order.tolist():
            classes: list[int] = []
            for i in row:
                c = self.classes[i]
                if c is not None and c not in classes:
                    classes.append(c)
                    if len(classes) == k:
                        break
            out.append(classes)
        return out


def ship_bank(bank: PhotoBank, out: str | Path = SHIPPED_BANK) -> Path:
    """Write a bank's embeddings and classes (no photo, no file name) as safetensors, so
    every install can say which real photos a picture is nearest to (:func:`shipped_bank`)."""
    from safetensors.torch import save_file

    keep = [i for i, c in enumerate(bank.classes) if c is not None]
    tensors = {"embeddings": bank.embeddings[keep].half().contiguous(), "classes": torch.tensor([bank.classes[i] for i in keep], dtype=torch.int16)}
    out = Path(out)
    save_file(tensors, str(out), metadata={"model": JUDGE_MODEL, "embed_version": str(EMBED_VERSION), "photos": str(len(keep))})
    return out


@functools.lru_cache(maxsize=1)
def shipped_bank(path: str | Path = SHIPPED_BANK) -> PhotoBank | None:
    """The shipped bank of the sample photos' judge embeddings (one photo per class for
    950 classes), or None where it is missing or made by another embedding."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("model") != JUDGE_MODEL or meta.get("embed_version") != str(EMBED_VERSION):
            return None
        embeddings, classes = f.get_tensor("embeddings").float(), f.get_tensor("classes").tolist()
    return PhotoBank(path, [f"#{i}" for i in range(len(classes))], classes, embeddings, key=path.name)


def bank_key(root: Path, files: Sequence[Path], classifier: Classifier) -> str:
    """A hash of the judge's weights and the folder's file list with sizes and mtimes."""
    h = hashlib.sha256(f"v{EMBED_VERSION}:{model_key(classifier)}:{classifier.input_size}".encode())
    for f in files:
        st = f.stat()
        h.update(f"\0{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def photo_bank(
    folder: str | Path = DEFAULT_PHOTOS,
    classifier: Classifier | None = None,
    use_cache: bool = True,
    cache: str | Path | None = None,
    batch_size: int = 32,
    progress: ProgressFn | None = None,
) -> PhotoBank:
    """Embed every photo of ``folder`` with the judge (or load the cached embeddings of
    the same files and judge). Photos are resized on their short side and centre-cropped
    to the judge's input size."""
    clf = classifier or load_judge()
    root = Path(folder)
    files = image_files(root)
    if not files:
        raise InputError(f"photo folder {str(root)[:120]} has no images")
    key = bank_key(root, files, clf)
    path = Path(cache) if cache is not None else cache_dir("plausibility") / f"{key}.npz"
    rels = [f.relative_to(root).as_posix() for f in files]
    classes = [photo_class(f) for f in files]
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) == key and list(z["paths"]) == rels:
                    return PhotoBank(root, rels, classes, torch.from_numpy(z["embeddings"].astype(np.float32)), key, path)
        except (OSError, KeyError, ValueError):
            pass  # a broken or foreign cache file: embed again
    chunks = []
    for start in range(0, len(files), batch_size):
        imgs = torch.stack([load_for_model(f, clf.input_size) for f in files[start : start + batch_size]])
        chunks.append(embed(imgs, clf, batch_size))
        if progress is not None:
            progress(min(start + batch_size, len(files)), len(files))
    embeddings = torch.cat(chunks)
    if use_cache:
        buf = io.BytesIO()
        np.savez(buf, key=np.array(key), paths=np.array(rels), embeddings=embeddings.numpy())
        write_bytes(buf.getvalue(), path)
    return PhotoBank(root, rels, classes, embeddings, key, path if use_cache else None)


# --------------------------------------------------------------------------- judging


@dataclass(frozen=True)
class Judgement:
    """What the judge says about one image made for class ``target``."""

    target: int
    #: the target's rank among the judge's classes (1 = its top-1)
    rank: int
    #: the judge's softmax probability of the target
    p: float
    #: rank of the class's photo among the bank's photos (1 = nearest); None without a
    #: bank or where the bank has no photo of the class
    plausibility: int | None
    #: the image's L2-normalised embedding (for :func:`diversity`)
    embedding: torch.Tensor = field(repr=False, compare=False)

    @property
    def top1(self) -> bool:
        return self.rank == 1

    @property
    def top5(self) -> bool:
        return self.rank <= 5


def judge_images(images: torch.Tensor, targets: Sequence[int], bank: PhotoBank | None = None,
                 classifier: Classifier | None = None) -> list[Judgement]:
    """Transfer and plausibility of [0, 1] images, one target class index per image, from
    one forward pass of the judge. Score the saved 8-bit PNG, not a training-pass image."""
    images = _batch(images)
    if images.shape[0] != len(targets):
        raise InputError(f"{images.shape[0]} images for {len(targets)} targets")
    logits, embs = logits_and_embeddings(images, classifier)
    probs = torch.softmax(logits, 1)
    ranks = bank.ranks(embs, targets) if bank is not None else [None] * len(targets)
    out = []
    for i, t in enumerate(targets):
        rank = int((logits[i] > logits[i, t]).sum()) + 1
        out.append(Judgement(int(t), rank, float(probs[i, t]), ranks[i], embs[i]))
    return out


@dataclass(frozen=True)
class Diversity:
    """How different the images of one target are (e.g. across seeds)."""

    #: mean cosine distance (1 - cosine similarity) over all pairs; None below 2 images
    mean_distance: float | None
    #: pairs closer than the near-duplicate threshold
    near_duplicates: int
    pairs: int


def diversity(embeddings: torch.Tensor | Sequence[torch.Tensor], near: float = NEAR_DUPLICATE) -> Diversity:
    """Pairwise cosine distances of L2-normalised embeddings (rows)."""
    embs = torch.stack(list(embeddings)) if not isinstance(embeddings, torch.Tensor) else embeddings
    embs = F.normalize(embs.float(), dim=1)
    dists = [1.0 - float(embs[i] @ embs[j]) for i, j in itertools.combinations(range(embs.shape[0]), 2)]
    if not dists:
        return Diversity(None, 0, 0)
    return Diversity(statistics.fmean(dists), sum(d < near for d in dists), len(dists))


__all__ = [
    "JUDGE_MODEL", "DEFAULT_PHOTOS", "NEAR_DUPLICATE", "load_judge", "logits_and_embeddings", "embed",
    "photo_class", "PhotoBank", "photo_bank", "bank_key", "Judgement", "judge_images", "Diversity", "diversity",
]
