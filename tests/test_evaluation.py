"""The held-out judge: plausibility ranks, the photo bank and its cache, diversity."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dgncore import evaluation as ev
from dgncore import paths
from dgncore.data import holdout_split, image_files
from dgncore.errors import InputError
from dgncore.models.classifiers import Classifier, imagenet_wnids


class TinyTimmNet(nn.Module):
    """A timm-shaped net (forward_features / forward_head), small enough for a test."""

    def __init__(self, n_classes: int = 1000) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, n_classes)
        self.calls = 0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += x.shape[0]
        return torch.relu(self.conv(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@pytest.fixture
def tiny_judge() -> Classifier:
    torch.manual_seed(0)
    names = [f"c{i}" for i in range(1000)]
    return Classifier("tiny-judge", TinyTimmNet(), 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), names)


def _write_photos(folder, wnid_indices, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    wnids = imagenet_wnids()
    for i in wnid_indices:
        arr = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{wnids[i]}_class{i}.png")
    (folder / "README.md").write_text("not a photo")


def _bank(vectors, classes):
    embs = torch.nn.functional.normalize(torch.tensor(vectors, dtype=torch.float32), dim=1)
    return ev.PhotoBank(Path("/nowhere"), [f"p{i}.png" for i in range(len(classes))], list(classes), embs)


def test_nearest_classes_name_each_class_once_nearest_first_and_skip_unknown_photos():
    bank = _bank([[1, 0, 0], [0.9, 0.1, 0], [0.8, 0.3, 0], [0, 1, 0], [0, 0, 1]], [4, None, 4, 7, 2])
    q = torch.nn.functional.normalize(torch.tensor([[1.0, 0.05, 0.0]]), dim=1)
    assert bank.nearest_classes(q, 3) == [[4, 7, 2]]
    assert bank.nearest_classes(q, 1) == [[4]]


def test_a_shipped_bank_keeps_embeddings_and_classes_but_no_file_names(tmp_path):
    bank = _bank([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [3, None, 9])
    out = ev.ship_bank(bank, tmp_path / "bank.safetensors")
    back = ev.shipped_bank.__wrapped__(out)
    assert back.classes == [3, 9] and torch.allclose(back.embeddings, bank.embeddings[[0, 2]], atol=1e-3)
    assert b"p0.png" not in out.read_bytes()  # the photos' names stay out of what ships
    from safetensors.torch import save_file

    save_file({"embeddings": torch.zeros(1, 3), "classes": torch.zeros(1, dtype=torch.int16)}, str(tmp_path / "other.safetensors"),
              metadata={"model": "another", "embed_version": "1"})
    assert ev.shipped_bank.__wrapped__(tmp_path / "other.safetensors") is None  # another network's features are not compared
    assert ev.shipped_bank.__wrapped__(tmp_path / "missing.safetensors") is None


def test_the_shipped_bank_is_lite2s_embedding_of_the_sample_photos():
    bank = ev.shipped_bank()
    assert bank is not None and len(bank) >= 900 and bank.embeddings.shape[1] == 1280
    assert len(set(bank.classes)) == len(bank)  # one photo per class
    assert torch.allclose(bank.embeddings.norm(dim=1), torch.ones(len(bank)), atol=1e-2)


def test_rank_of_the_class_photo_among_all_photos():
    bank = _bank([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], [0, 1, 2, None])
    q = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2, 0.0], [1.0, 0.2, 0.0], [0.0, 0.0, 1.0]]), dim=1)
    # query 0 is nearest photo 0 (class 0): rank 1; for class 1 the photos of class 0 and
    # the unlabelled one are nearer: rank 3; query 2 is its own class's photo
    assert bank.ranks(q, [0, 1, 2]) == [1, 3, 1]
    assert bank.ranks(q[:1], [7]) == [None]  # no photo of that class
    with pytest.raises(ValueError):
        bank.ranks(q, [0])


def test_rank_takes_the_nearest_photo_of_the_class_and_ties_count_for_it():
    bank = _bank([[1, 0], [0, 1], [1, 0]], [5, 6, 6])
    q = torch.tensor([[1.0, 0.0]])
    assert bank.ranks(q, [6]) == [1]  # photo 2 (class 6) ties photo 0 for the nearest
    assert bank.ranks(torch.tensor([[0.0, 1.0]]), [5]) == [2]
    assert [str(p) for p in bank.photos(6)] == ["/nowhere/p1.png", "/nowhere/p2.png"] and bank.photos(9) == []


def test_wnid_mapping():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and wnids[0] == "n01440764" and len(set(wnids)) == 1000
    assert ev.photo_class("n01440764_tench.JPEG") == 0
    assert ev.photo_class(f"/a/b/{wnids[999]}_toilet_tissue.JPEG") == 999
    assert ev.photo_class(f"{wnids[1]}.jpg") == 1
    assert ev.photo_class("tench.JPEG") is None and ev.photo_class("n00000000_x.png") is None
    assert ev.photo_class("b_x.png", wnids=["a", "b"]) == 1


def test_photo_bank_is_cached_and_rebuilt_when_the_folder_changes(tmp_path, monkeypatch, tiny_judge):
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    photos = tmp_path / "photos"
    _write_photos(photos, [0, 3, 7])
    model = tiny_judge.model
    bank = ev.photo_bank(photos, tiny_judge)
    assert model.calls == 3 and len(bank) == 3 and bank.classes == [0, 3, 7]
    assert bank.cache_file is not None and bank.cache_file.parent == tmp_path / "cache" / "plausibility"
    again = ev.photo_bank(photos, tiny_judge)
    assert model.calls == 3 and torch.equal(again.embeddings, bank.embeddings)  # from the cache
    # a changed file (new size and mtime) is embedded again
    f = sorted(photos.glob("*.png"))[1]
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(f)
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = ev.photo_bank(photos, tiny_judge)
    assert model.calls == 6 and changed.key != bank.key and not torch.equal(changed.embeddings[1], bank.embeddings[1])
    # a new photo too; a broken cache file is rebuilt rather than trusted
    _write_photos(photos, [9], seed=1)
    grown = ev.photo_bank(photos, tiny_judge)
    assert model.calls == 10 and grown.classes == [0, 3, 7, 9]
    grown.cache_file.write_bytes(b"garbage")
    assert len(ev.photo_bank(photos, tiny_judge)) == 4 and model.calls == 14
    assert ev.photo_bank(photos, tiny_judge, use_cache=False).cache_file is None and model.calls == 18


def test_judge_images_gives_transfer_and_plausibility(tmp_path, monkeypatch, tiny_judge):
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    photos = tmp_path / "photos"
    _write_photos(photos, [0, 3, 7])
    bank = ev.photo_bank(photos, tiny_judge)
    from dgncore.data import load_for_model

    imgs = torch.stack([load_for_model(photos / p, 32) for p in bank.paths])
    out = ev.judge_images(imgs, [0, 3, 500], bank, tiny_judge)
    assert [j.plausibility for j in out[:2]] == [1, 1] and out[2].plausibility is None
    logits = tiny_judge.logits(imgs)
    for j, row in zip(out, logits):
        assert j.rank == int((row > row[j.target]).sum()) + 1
        assert j.top1 == (j.rank == 1) and j.top5 == (j.rank <= 5)
        assert j.p == pytest.approx(float(torch.softmax(row, 0)[j.target]), rel=1e-4)
    assert torch.allclose(out[0].embedding, bank.embeddings[0], atol=1e-5)
    assert ev.judge_images(imgs[0], [0], None, tiny_judge)[0].plausibility is None
    with pytest.raises(InputError):
        ev.judge_images(imgs, [0], bank, tiny_judge)


def test_diversity():
    e = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    d = ev.diversity(e)
    assert d.pairs == 3 and d.near_duplicates == 1 and d.mean_distance == pytest.approx(2 / 3)
    assert ev.diversity([e[0]]) == ev.Diversity(None, 0, 0)
    assert ev.diversity([e[0], e[2]], near=1.5).near_duplicates == 1


needs_photos = pytest.mark.skipif(not ev.DEFAULT_PHOTOS.is_dir(), reason="no photo folder beside the checkout")


@needs_photos
def test_real_photo_folder_maps_to_classes_and_the_judge_sees_them():
    files = image_files(ev.DEFAULT_PHOTOS)
    classes = [ev.photo_class(f) for f in files]
    assert None not in classes and len(set(classes)) == len(files) and classes == sorted(classes)
    _train, held = holdout_split(files)
    assert len(held) == len(files) // 10
    from dgncore.data import load_for_model

    judge = ev.load_judge()
    tench = next(f for f in files if ev.photo_class(f) == 0)
    img = load_for_model(tench, judge.input_size)
    (j,) = ev.judge_images(img, [0], None, judge)
    assert j.top5 and abs(float(j.embedding.norm()) - 1) < 1e-4
