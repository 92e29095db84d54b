"""Files in and out, with their guards: images, image folders, ZIP archives, atomic writes.

Everything a user can hand us (uploads, folders, archives) is untrusted: images are
opened with Pillow under a pixel limit and fully decoded before use; archives are
checked for path escapes, links, entry counts and expanded size before anything is
written; results are written to a temporary file and renamed, so a crash leaves no
half-written entry.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import struct
import tempfile
import threading
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from dgncore.errors import InputError, one_line

if TYPE_CHECKING:  # torch comes in with the first tensor: reading and listing files needs none
    import torch

MAX_IMAGE_PIXELS = 40_000_000  # ~6300 x 6300
MAX_IMAGE_BYTES = 50 * 1024**2
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_ZIP_ENTRIES = 20_000
MAX_ZIP_BYTES = 2 * 1024**3
MAX_ZIP_RATIO = 200  # expanded / compressed, per entry
MAX_ZIP_NAME = 1024  # bytes of an entry's path

Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


def open_image(source: str | Path | bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode an image fully into RGB; corrupt, truncated, huge or non-image input is an InputError."""
    name = "upload" if isinstance(source, bytes) else Path(source).name[:80]
    if isinstance(source, bytes):
        if len(source) > MAX_IMAGE_BYTES:
            raise InputError(f"image {name} is larger than {MAX_IMAGE_BYTES >> 20} MB")
        fp: Any = io.BytesIO(source)
    else:
        path = Path(source)
        try:
            if not path.is_file():
                raise InputError(f"image {name} does not exist")
            size = path.stat().st_size
        except OSError as e:  # a name too long for the file system, a broken mount, ...
            raise InputError(f"cannot read image {name}: {e.strerror or type(e).__name__}") from e
        if size > MAX_IMAGE_BYTES:
            raise InputError(f"image {name} is larger than {MAX_IMAGE_BYTES >> 20} MB")
        fp = path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise InputError(f"image {name} is too large ({w}x{h} pixels; the limit is {max_pixels:,})")
                im.load()
                return im.convert("RGB")
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(f"image {name} is too large to decode safely (decompression bomb)") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError, IndexError, KeyError, EOFError, struct.error) as e:
        # Pillow's decoders raise more than OSError on damaged data (a TIFF tag of the wrong type: TypeError)
        raise InputError(f"{name} is not a readable image ({one_line(e, 80)})") from e


def load_image(source: str | Path | bytes, size: int | None = None) -> torch.Tensor:
    """An image as a (3, H, W) float tensor in [0, 1], optionally resized to size x size."""
    im = open_image(source)
    if size is not None:
        im = im.resize((size, size), Image.BICUBIC)
    return _tensor(np.asarray(im, dtype=np.uint8))


def _tensor(arr: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8, rounding as :func:`optimize.quantize` does."""
    import torch

    return (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def slug(text: str, limit: int = 50, empty: str = "item") -> str:
    """A file-name-safe, lower-case form of ``text`` (letters and digits joined by ``-``)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:limit] or empty


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:40]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_png(image: torch.Tensor | np.ndarray, path: Path) -> None:
    arr = image if isinstance(image, np.ndarray) else to_uint8(image)
    _atomic_write(Path(path), lambda f: Image.fromarray(arr).save(f, format="PNG"))


#: lossy WebP of compact galleries: about a fifth of the PNG's bytes for these images
WEBP_QUALITY = 90


def save_image(image: torch.Tensor | np.ndarray, path: Path) -> None:
    """PNG, or lossy WebP when ``path`` ends in ``.webp``."""
    if Path(path).suffix.lower() != ".webp":
        return save_png(image, path)
    arr = image if isinstance(image, np.ndarray) else to_uint8(image)
    _atomic_write(Path(path), lambda f: Image.fromarray(arr).save(f, format="WEBP", quality=WEBP_QUALITY, method=6))


def write_json(data: Any, path: Path) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False, default=_json_default)
    _atomic_write(Path(path), lambda f: f.write(text.encode("utf-8")))


def write_bytes(data: bytes, path: Path) -> None:
    _atomic_write(Path(path), lambda f: f.write(data))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@dataclass(frozen=True)
class ImageFolder:
    """An ImageFolder layout: one sub-folder per class, images inside."""

    root: Path
    classes: list[str]
    files: dict[str, list[Path]]


def scan_image_folder(root: str | Path, max_per_class: int | None = None) -> ImageFolder:
    """Find class sub-folders and their image files (by suffix; decoding happens on use)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset folder {str(root)[:120]} does not exist")
    classes, files = [], {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        imgs = sorted(p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if max_per_class is not None:
            imgs = imgs[:max_per_class]
        if imgs:
            classes.append(sub.name)
            files[sub.name] = imgs
    if not classes:
        raise InputError(
            f"dataset folder {root.name[:80]} has no class sub-folders with images "
            "(expected ImageFolder layout: DIR/<class>/<image>.png)"
        )
    return ImageFolder(root, classes, files)


#: every HOLDOUT_EVERY-th image of a folder (sorted by relative path) is kept out of training
HOLDOUT_EVERY = 10


def image_files(root: str | Path, limit: int | None = None) -> list[Path]:
    """Every image file under ``root`` (recursively, by suffix), sorted by relative path."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"image folder {str(root)[:120]} does not exist")
    files = sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: p.relative_to(root).as_posix())
    return files[:limit] if limit is not None else files


def holdout_split(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(training, held-out) files: the held-out tenth is every 10th file in the given
    order, starting with the 10th (index 9, 19, ...). Fixed by the file list alone, so a
    decoder's training run and a benchmark agree on which photos it never saw."""
    held = [f for i, f in enumerate(files) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
    train = [f for i, f in enumerate(files) if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1]
    return train, held


def safe_extract_zip(data: bytes | str | Path, dest: str | Path) -> Path:
    """Extract an uploaded ZIP into ``dest`` after checking every entry: no absolute paths,
    no ``..``, no links, at most MAX_ZIP_ENTRIES entries and MAX_ZIP_BYTES expanded, no
    entry that expands more than MAX_ZIP_RATIO times (zip bombs). Nothing is written
    unless the whole archive passes."""
    dest = Path(dest)
    try:
        zf = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise InputError("the upload is not a readable ZIP archive") from e
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise InputError(f"the ZIP has {len(infos):,} entries; the limit is {MAX_ZIP_ENTRIES:,}")
        total = 0
        for info in infos:
            name = info.filename
            parts = PurePosixPath(name.replace("\\", "/")).parts
            if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
                raise InputError(f"the ZIP entry {name[:80]!r} points outside the archive")
            if "\x00" in name or len(name.encode("utf-8", "surrogateescape")) > MAX_ZIP_NAME or any(len(q.encode("utf-8", "surrogateescape")) > 255 for q in parts):
                raise InputError(f"the ZIP entry {name[:80]!r} has a name that is too long")
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise InputError(f"the ZIP entry {name[:80]!r} is a symbolic link, which is not allowed")
            total += info.file_size
            if info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1) and info.file_size > 1024**2:
                raise InputError(f"the ZIP entry {name[:80]!r} expands {info.file_size // max(info.compress_size, 1)}x (zip bomb?)")
        if total > MAX_ZIP_BYTES:
            raise InputError(f"the ZIP expands to {total / 1024**3:.1f} GB; the limit is {MAX_ZIP_BYTES / 1024**3:.0f} GB")
        if dest.exists() and any(dest.iterdir()):
            raise InputError(f"cannot extract into {dest.name[:80]}: the folder is not empty")
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".unzip-"))
        try:
            _extract_checked(zf, infos, staging)
        except BaseException as e:
            shutil.rmtree(staging, ignore_errors=True)
            # corrupt data (CRC, deflate), encrypted or unsupported entries, names that
            # clash (a file and a folder of one name) or that the file system refuses
            if isinstance(e, (OSError, zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError)):
                why = e.strerror if isinstance(e, OSError) and e.strerror else one_line(e, 120)
                raise InputError(f"the ZIP cannot be extracted: {why}") from e
            raise
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    return dest


def _extract_checked(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], dest: Path) -> None:
    base = dest.resolve()
    for info in infos:
        target = (base / info.filename).resolve()
        if not target.is_relative_to(base):
            raise InputError(f"the ZIP entry {info.filename[:80]!r} points outside the archive")
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as out:
            remaining = info.file_size + 1
            while chunk := src.read(1 << 20):
                remaining -= len(chunk)
                if remaining < 0:
                    raise InputError(f"the ZIP entry {info.filename[:80]!r} is larger than it claims")
                out.write(chunk)


def iter_chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


#: the most images a folder may offer (more are left out, and said)
MAX_IMAGES = 20_000
_file_hashes: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def _file_hash(path: Path) -> str:
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        if memo in _file_hashes:
            return _file_hashes[memo]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    digest = h.hexdigest()
    with _hash_lock:
        _file_hashes[memo] = digest
    return digest


def list_images(root: str | Path, max_images: int = MAX_IMAGES) -> tuple[list[str], list[str], bool]:
    """(relative paths, labels, truncated) of the images in ``root`` and its direct
    sub-folders (hidden entries skipped), sorted."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"image folder {str(root)[:120]} does not exist")
    if not root.is_dir():
        raise InputError(f"{root.name[:80]} is not a folder of images")
    found: list[tuple[str, str]] = []
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            found.append((p.name, ""))
        elif p.is_dir():
            for q in sorted(p.iterdir()):
                if q.is_file() and not q.name.startswith(".") and q.suffix.lower() in IMAGE_SUFFIXES:
                    found.append((f"{p.name}/{q.name}", p.name))
    if not found:
        raise InputError(f"image folder {root.name[:80]} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in it or its sub-folders")
    truncated = len(found) > max_images
    found = found[:max_images]
    return [f for f, _ in found], [lab for _, lab in found], truncated


def folder_key(root: Path, paths: Sequence[str]) -> str:
    h = hashlib.sha256()
    for rel in paths:
        h.update(rel.encode())
        h.update(_file_hash(root / rel).encode())
    return h.hexdigest()[:16]


def load_for_model(path: Path, size: int) -> torch.Tensor:
    """(3, size, size) in [0, 1]: the short side resized to ``size``, centre-cropped."""
    im = open_image(path)
    w, h = im.size
    s = size / min(w, h)
    if s != 1:
        im = im.resize((max(size, round(w * s)), max(size, round(h * s))), resample=3)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    im = im.crop((left, top, left + size, top + size))
    return _tensor(np.asarray(im, dtype=np.uint8))
