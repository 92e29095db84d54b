"""Hostile input: every guard has a test that fails when the guard is removed.

Each bad input must give one `InputError` (a one-line message for a person) and change
nothing on disk. Uploads (images, ZIP archives, weight files, TorchScript), absurd
numbers, unknown layers, unicode and very long names; hypothesis for target parsing and
the loaders."""

from __future__ import annotations

import io
import os
import stat
import struct
import tempfile
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
from conftest import TINY_CLASSES, TinyNet, make_tiny_classifier
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from tiny_torchscript import save_tiny_torchscript

from dgncore import data
from dgncore.drawing.objectives import Target, parse_target
from dgncore.drawing.registry import make_preset
from dgncore.errors import InputError
from dgncore.models.classifiers import (
    Classifier,
    _load_cached,
    load_classifier,
    read_state_dict,
)
from dgncore.runs import (
    class_targets,
    draw_classes,
    generate,
    parse_shard,
    parse_targets,
)

CLF = make_tiny_classifier()
FAST = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


def one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert text and "\n" not in text and len(text) < 400, text
    return text


def tree(root: Path) -> dict[str, int]:
    """Every file and folder under ``root`` (hidden ones too) with its size."""
    return {str(p.relative_to(root)): (p.lstat().st_size if not p.is_dir() else -1) for p in root.rglob("*")}


def png_bytes(w: int = 8, h: int = 8, color=(200, 30, 30), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format=fmt)
    return buf.getvalue()


def bomb_png(w: int, h: int) -> bytes:
    """A PNG of w x h black grey pixels: tiny on disk (zeros compress ~1000x), huge decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\0" * (w + 1)
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- image uploads

GOOD_PNG = png_bytes(16, 16)


@pytest.mark.parametrize(
    "name, blob",
    [
        ("empty", b""),
        ("text", b"hello, I am not an image"),
        ("html", b"<html><script>alert(1)</script></html>"),
        ("svg", b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="10" height="10"/></svg>'),
        ("png signature only", b"\x89PNG\r\n\x1a\n"),
        ("truncated png", GOOD_PNG[: len(GOOD_PNG) // 2]),
        ("truncated jpeg", png_bytes(64, 64, fmt="JPEG")[:300]),
        ("corrupt png data", GOOD_PNG[:40] + bytes(b ^ 0xFF for b in GOOD_PNG[40:-12]) + GOOD_PNG[-12:]),
        ("zip", b"PK\x05\x06" + b"\0" * 18),
        ("elf", b"\x7fELF" + b"\0" * 60),
    ],
)
def test_corrupt_truncated_and_non_image_uploads_are_refused(name, blob, tmp_path):
    with pytest.raises(InputError) as e:
        data.open_image(blob)
    one_line(e)
    (tmp_path / "upload.png").write_bytes(blob)
    with pytest.raises(InputError):
        data.load_image(tmp_path / "upload.png")


@pytest.mark.slow
def test_decompression_bombs_are_refused_before_decoding():
    bomb = bomb_png(20_000, 20_000)  # 400 megapixels in ~400 kB
    assert len(bomb) < 1_000_000
    t = time.perf_counter()
    with pytest.raises(InputError, match="too large") as e:
        data.open_image(bomb)
    assert time.perf_counter() - t < 2  # refused from the header, never decoded
    one_line(e)
    # between our limit and Pillow's own (2x): only our pixel check stands in the way
    with pytest.raises(InputError, match="too large"):
        data.open_image(bomb_png(7_000, 7_000))
    with pytest.raises(InputError, match="too large"):
        data.open_image(png_bytes(100, 100), max_pixels=5_000)
    assert data.open_image(png_bytes(100, 100)).size == (100, 100)


def test_uploads_over_the_byte_limit_are_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "MAX_IMAGE_BYTES", 1_000)
    big = bomb_png(2_000, 2_000)
    assert len(big) > 1_000
    with pytest.raises(InputError, match="larger than"):
        data.open_image(big)
    (tmp_path / "big.png").write_bytes(big)
    with pytest.raises(InputError, match="larger than"):
        data.open_image(tmp_path / "big.png")


@pytest.mark.parametrize("name", ["missing.png", "🐟" * 300 + ".png", "a" * 5000, "dir"])
def test_missing_unicode_and_overlong_paths_are_refused(name, tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(InputError) as e:
        data.open_image(tmp_path / name)
    assert len(one_line(e)) < 300


@pytest.mark.filterwarnings("ignore::UserWarning")
@FAST
@given(st.binary(max_size=2_000))
def test_open_image_of_any_bytes_is_an_image_or_an_input_error(blob):
    try:
        im = data.open_image(blob)
    except InputError:
        return
    assert im.mode == "RGB"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_tiff_whose_tag_has_the_wrong_type_is_an_input_error():
    blob = bytearray(png_bytes(12, 9, fmt="TIFF"))
    blob[72] = 7  # found by the test below: Pillow raised TypeError while decoding
    blob = bytes(blob[:140])
    with pytest.raises(InputError, match="not a readable image"):
        data.open_image(blob)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on damaged TIFF/EXIF data
@FAST
@given(st.sampled_from([png_bytes(12, 9), png_bytes(12, 9, fmt="JPEG"), png_bytes(12, 9, fmt="GIF"), png_bytes(12, 9, fmt="BMP"), png_bytes(12, 9, fmt="TIFF"), png_bytes(12, 9, fmt="WEBP")]), st.data())
def test_open_image_of_damaged_images_is_an_image_or_an_input_error(blob, draw):
    blob = bytearray(blob)
    for _ in range(draw.draw(st.integers(0, 8))):
        i = draw.draw(st.integers(0, len(blob) - 1))
        blob[i] = draw.draw(st.integers(0, 255))
    blob = blob[: draw.draw(st.integers(0, len(blob)))]
    try:
        im = data.open_image(bytes(blob))
    except InputError:
        return
    assert im.mode == "RGB" and im.size[0] * im.size[1] <= data.MAX_IMAGE_PIXELS


# --------------------------------------------------------------------------- ZIP archives


def make_zip(entries, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """``entries``: (name or ZipInfo, bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, body in entries:
            zf.writestr(name, body)
    return buf.getvalue()


def symlink_entry(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def lying_size_zip() -> bytes:
    """An entry whose headers claim 10 bytes but which holds 5000."""
    blob = bytearray(make_zip([("liar.txt", b"A" * 5000)], zipfile.ZIP_STORED))
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        i = blob.find(sig)
        blob[i + off : i + off + 4] = struct.pack("<I", 10)
    return bytes(blob)


def corrupt_crc_zip() -> bytes:
    blob = bytearray(make_zip([("ok.txt", b"hello world " * 200)]))
    i = blob.find(b"ok.txt") + len("ok.txt") + 20
    blob[i] ^= 0xFF
    return bytes(blob)


def encrypted_zip() -> bytes:
    blob = bytearray(make_zip([("secret.txt", b"x" * 100)], zipfile.ZIP_STORED))
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = blob.find(sig)
        blob[i + off] |= 0x1  # "encrypted" flag
    return bytes(blob)


BAD_ZIPS = {
    "dot-dot": lambda tmp: make_zip([("ok.png", GOOD_PNG), ("../evil.txt", b"pwned")]),
    "dot-dot inside": lambda tmp: make_zip([("a/../../evil.txt", b"pwned")]),
    "backslash dot-dot": lambda tmp: make_zip([("..\\evil.txt", b"pwned")]),
    "absolute": lambda tmp: make_zip([(str(tmp / "evil.txt"), b"pwned")]),
    "drive letter": lambda tmp: make_zip([("C:/evil.txt", b"pwned")]),
    "symlink": lambda tmp: make_zip([symlink_entry("link", str(tmp)), ("ok.png", GOOD_PNG)]),
    "symlink then write through it": lambda tmp: make_zip([symlink_entry("link", str(tmp)), ("link/evil.txt", b"pwned")]),
    "too many entries": lambda tmp: make_zip([(f"f{i}.txt", b"x") for i in range(data.MAX_ZIP_ENTRIES + 1)], zipfile.ZIP_STORED),
    "bomb": lambda tmp: make_zip([("bomb.bin", b"\0" * (20 * 1024**2))]),
    "too large in total": lambda tmp: make_zip([(f"part{i}.bin", os.urandom(3000)) for i in range(3)]),
    "lying size": lambda tmp: lying_size_zip(),
    "corrupt data": lambda tmp: corrupt_crc_zip(),
    "encrypted": lambda tmp: encrypted_zip(),
    "file and folder of one name": lambda tmp: make_zip([("a", b"file"), ("a/b", b"inside")]),
    "name too long": lambda tmp: make_zip([("x" * 300 + ".png", GOOD_PNG)]),
    "not a zip": lambda tmp: b"this is not an archive",
    "truncated": lambda tmp: make_zip([("ok.png", GOOD_PNG)])[:-30],
}


@pytest.mark.parametrize("kind", list(BAD_ZIPS))
def test_bad_archives_are_refused_and_nothing_changes_on_disk(kind, tmp_path, monkeypatch):
    if kind == "too many entries":
        monkeypatch.setattr(data, "MAX_ZIP_ENTRIES", 50)
    if kind == "too large in total":
        monkeypatch.setattr(data, "MAX_ZIP_BYTES", 5000)
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("mine")
    blob = BAD_ZIPS[kind](work)
    before = tree(tmp_path)
    with pytest.raises(InputError) as e:
        data.safe_extract_zip(blob, work / "dataset")
    one_line(e)
    assert tree(tmp_path) == before  # no dataset folder, no staging folder, no evil.txt
    as_file = tmp_path / "upload.zip"
    as_file.write_bytes(blob)
    before = tree(tmp_path)
    with pytest.raises(InputError):
        data.safe_extract_zip(as_file, work / "dataset")
    assert tree(tmp_path) == before


def test_a_good_archive_extracts_and_a_full_folder_is_not_overwritten(tmp_path):
    blob = make_zip([("tench/a.png", GOOD_PNG), ("hen/b.png", GOOD_PNG), ("hen/", b"")])
    dest = data.safe_extract_zip(blob, tmp_path / "ds")
    assert sorted(tree(tmp_path)) == ["ds", "ds/hen", "ds/hen/b.png", "ds/tench", "ds/tench/a.png"]
    assert data.scan_image_folder(dest).classes == ["hen", "tench"]
    before = tree(tmp_path)
    with pytest.raises(InputError, match="not empty"):
        data.safe_extract_zip(make_zip([("tench/a.png", b"other")]), dest)
    assert tree(tmp_path) == before


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Duplicate name")
@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=40), st.binary(max_size=30)), min_size=1, max_size=5))
def test_archives_with_any_entry_names_stay_inside_their_folder(entries):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        work = root / "work"
        work.mkdir()
        try:
            blob = make_zip(entries)
        except (ValueError, UnicodeEncodeError, IndexError):  # zipfile itself refuses to write the name
            return
        before = tree(root)
        try:
            dest = data.safe_extract_zip(blob, work / "ds")
        except InputError:
            assert tree(root) == before
            return
        for p in dest.rglob("*"):
            assert p.resolve().is_relative_to(dest.resolve()) and not p.is_symlink()
        assert {p.split(os.sep)[0] for p in tree(root)} == {"work"}
        assert set(tree(work)) - set(tree(dest.parent)) == set()


# --------------------------------------------------------------------------- weight files


class _Payload:
    """Unpickling this runs os.mkdir(marker): what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_code_in_a_weight_file_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "x": _Payload(marker)}, evil)
    for name in ("evil.pth", "evil.pt", "evil.bin", "evil.ckpt"):
        path = tmp_path / name
        if path != evil:
            path.write_bytes(evil.read_bytes())
        with pytest.raises(InputError, match="refused") as e:
            read_state_dict(path)
        one_line(e)
        assert not marker.exists()
    with pytest.raises(InputError, match="refused"):
        load_classifier("resnet18", weights=evil, device="cpu")
    assert not marker.exists()
    # the payload is real: an unguarded load runs it
    torch.load(evil, weights_only=False)
    assert marker.is_dir()


def test_whole_pickled_models_and_non_tensor_dicts_are_refused(tmp_path):
    torch.save(TinyNet(), tmp_path / "model.pt")
    with pytest.raises(InputError, match="refused"):
        read_state_dict(tmp_path / "model.pt")
    torch.save({"a": 1, "b": "text"}, tmp_path / "numbers.pt")
    with pytest.raises(InputError, match="state dict of tensors"):
        read_state_dict(tmp_path / "numbers.pt")
    torch.save(TinyNet().state_dict(), tmp_path / "good.pt")
    assert set(read_state_dict(tmp_path / "good.pt")) == set(TinyNet().state_dict())


@pytest.mark.parametrize(
    "name, blob",
    [
        ("random.pt", os.urandom(500)),
        ("empty.pth", b""),
        ("random.safetensors", os.urandom(500)),
        ("huge-header.safetensors", struct.pack("<Q", 2**60) + b"{}"),
        ("bad-json.safetensors", struct.pack("<Q", 10) + b"{not json}"),
        ("lying-offsets.safetensors", (lambda h: struct.pack("<Q", len(h)) + h)(b'{"w":{"dtype":"F32","shape":[1000000],"data_offsets":[0,4000000]}}') + b"\0" * 16),
    ],
)
def test_broken_weight_files_are_input_errors(name, blob, tmp_path):
    (tmp_path / name).write_bytes(blob)
    with pytest.raises(InputError) as e:
        read_state_dict(tmp_path / name)
    one_line(e)


def test_weight_files_over_the_size_limit_are_refused_unread(tmp_path, monkeypatch):
    import dgncore.models.classifiers as classifiers

    torch.save(TinyNet().state_dict(), tmp_path / "big.pt")
    monkeypatch.setattr(classifiers, "MAX_WEIGHTS_BYTES", 100)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("read a file over the limit"))
    with pytest.raises(InputError, match="larger than"):
        read_state_dict(tmp_path / "big.pt")


@settings(deadline=None, max_examples=80)
@given(st.binary(max_size=600), st.sampled_from([".pt", ".safetensors"]))
def test_weight_files_of_any_bytes_are_tensors_or_input_errors(blob, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"w{suffix}"
        path.write_bytes(blob)
        try:
            sd = read_state_dict(path)
        except InputError:
            return
        assert all(isinstance(v, torch.Tensor) for v in sd.values())


def test_a_weight_file_with_an_odd_pickle_header_is_one_error_and_no_warning(tmp_path):
    """torch warns about a pickle protocol it does not know before it fails; the user
    should see only the InputError's line."""
    path = tmp_path / "w.pt"
    path.write_bytes(b"\x80\x46" + b"x" * 20)  # pickle protocol 70
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(InputError, match="refused to load"):
            read_state_dict(path)
    assert [str(w.message) for w in seen] == []


# --------------------------------------------------------------------------- TorchScript


@pytest.fixture
def torchscript_model(tmp_path):
    _load_cached.cache_clear()
    yield save_tiny_torchscript(tmp_path)
    _load_cached.cache_clear()


@pytest.mark.parametrize(
    "env, allowed",
    [
        ({}, True),
        ({"DGN_ALLOW_TORCHSCRIPT": "0"}, False),
        ({"DGN_HOSTED": "1"}, False),
        ({"DGN_HOSTED": "1", "DGN_ALLOW_TORCHSCRIPT": "1"}, True),
        ({"DGN_HOSTED": "0", "DGN_ALLOW_TORCHSCRIPT": "0"}, False),
    ],
)
def test_torchscript_loads_only_where_the_operator_allows_it(env, allowed, torchscript_model, monkeypatch, capsys):
    """The policy is read by the hosting settings and passed to the loader (which reads no
    settings itself); the CLI and the job queue pass it."""
    from dgncore.__main__ import main
    from dgncore.limits import Limits, torchscript_allowed

    for key in ("DGN_HOSTED", "DGN_ALLOW_TORCHSCRIPT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert torchscript_allowed() == Limits.from_env().allow_torchscript == allowed
    if allowed:
        assert load_classifier(str(torchscript_model), device="cpu", allow_torchscript=torchscript_allowed()).classes == TINY_CLASSES
        return
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("TorchScript was loaded"))
    with pytest.raises(InputError, match="switched off") as e:
        load_classifier(str(torchscript_model), device="cpu", allow_torchscript=torchscript_allowed())
    one_line(e)
    assert main(["classes", "--model", str(torchscript_model)]) == 2
    assert "switched off" in capsys.readouterr().err
    with pytest.raises(InputError, match="switched off|not offered"):
        Limits.from_env().check_model(str(torchscript_model), None)


@pytest.mark.parametrize(
    "sidecar",
    [
        "not json",
        '{"input_size": 100000, "mean": [0,0,0], "std": [1,1,1], "classes": ["a","b"]}',
        '{"input_size": 32, "mean": [0,0,0], "std": [0,0,0], "classes": ["a","b"]}',
        '{"input_size": 32, "mean": [0,0,0], "std": [1,1,1], "classes": ["only one"]}',
        '{"input_size": 32, "mean": [0,0,0], "std": [1,1,1], "classes": ["a","b","c"]}',
        '{"input_size": "big"}',
    ],
)
def test_bad_torchscript_sidecars_are_input_errors(sidecar, torchscript_model):
    torchscript_model.with_suffix(".json").write_text(sidecar)
    with pytest.raises(InputError) as e:
        load_classifier(str(torchscript_model), device="cpu")
    one_line(e)


# --------------------------------------------------------------------------- absurd numbers


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps": -1}, {"steps": 0}, {"steps": 10**12}, {"steps": 2.5}, {"steps": "10"}, {"steps": True},
        {"size": 0}, {"size": -5}, {"size": 10**6}, {"size": "big"}, {"size": float("nan")},
        {"width": 0}, {"width": -1}, {"width": float("nan")}, {"width": 1e9},
        {"lr": float("nan")}, {"lr": float("inf")}, {"lr": -1}, {"lr": "x"},
        {"penalty": float("nan")}, {"penalty": -1}, {"reg_weight": float("inf")}, {"noise_sigma": -0.5},
        {"early_stop": 2}, {"early_stop": float("nan")}, {"not_a_setting": 1},
        {"restarts": 0}, {"restarts": 10**6}, {"restarts": 1.5}, {"restarts": True}, {"init_jitter": -1}, {"init_jitter": float("nan")},
        {"prune_after": -1}, {"prune_after": 2.5}, {"prune_after": 10**9}, {"transforms": 1}, {"transforms": "no"}, {"bf16": "yes"},
        {"views": 0}, {"views": 10**6}, {"views": "2"}, {"views": 2}, {"lr_schedule": "warm"}, {"lr_schedule": None},
    ],
)
def test_absurd_preset_numbers_are_input_errors(kwargs):
    with pytest.raises(InputError) as e:
        make_preset("pixel", **kwargs)
    one_line(e)


@pytest.mark.parametrize("seed", [-1, 2**64, 2**70, 1.5, "3", True])
def test_absurd_seeds_are_input_errors(seed, tmp_path):
    with pytest.raises(InputError, match="seed") as e:
        generate(CLF, [parse_target("class:0", CLF)], make_preset("pixel", steps=1, size=16), tmp_path / "out", seed=seed, reuse=False)
    one_line(e)
    assert not (tmp_path / "out").exists()


def test_absurd_batches_shards_and_class_ranges_are_input_errors(tmp_path):
    many = [f"class:{i % 10}" for i in range(65)]
    with pytest.raises(InputError, match="at most"):
        parse_targets(many, CLF)
    targets = [parse_target("class:0", CLF)] * 65
    with pytest.raises(InputError):
        generate(CLF, targets, make_preset("pixel", steps=1, size=16), tmp_path / "out")
    for batch in (0, -3, 10**6):
        with pytest.raises(InputError, match="batch"):
            draw_classes(CLF, targets[:1], make_preset("pixel", steps=1, size=16), tmp_path / "out", batch=batch)
    for text in ("0-99999999999999", "5-2", "-1", "0-9,99", ""):
        with pytest.raises(InputError):
            class_targets(CLF, text)
    for shard in ("0/0", "5/2", "1/99999999", "a/b", "1/-2"):
        with pytest.raises(InputError):
            parse_shard(shard)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "text",
    [
        "class:10", "class:99999999999999999999999", "class:-1", "class:1e5", "class:²", "class:٣",
        "classes:0+99", "classes:0*1e400", "classes:0*nan", "classes:0*-1", "classes:" + "+".join(map(str, range(10))) * 2,
        "filter:features.0:8", "filter:features.0:-1", "filter:features.0:99999999", "neuron:features.0:0:16:0",
        "neuron:features.0:0:0:-1", "group:features.0:1*0", "filter:features.0:٣", "filter:features.0:𝟘", "group:features.0:" + ",".join(map(str, range(8))) * 3,
    ],
)
def test_absurd_class_indices_and_units_are_input_errors(text):
    with pytest.raises(InputError) as e:
        parse_target(text, CLF)
    one_line(e)


# --------------------------------------------------------------------------- unknown layers


@pytest.mark.parametrize("text", ["filter:nope:0", "filter::0", "group:features.99:0", "neuron:fc.weight:0:0:0", "filter:../../etc:0", "filter:" + "🐟" * 200 + ":0"])
def test_unknown_layers_are_input_errors(text):
    with pytest.raises(InputError, match="layer") as e:
        parse_target(text, CLF)
    one_line(e)


def test_unknown_layers_in_a_forward_pass_and_torchscript_layers_are_input_errors(torchscript_model):
    with pytest.raises(InputError, match="unknown layer"):
        CLF.logits_and_activations(torch.zeros(1, 3, 32, 32), ["nope"])
    ts = load_classifier(str(torchscript_model), device="cpu")
    with pytest.raises(InputError, match="no layers"):
        parse_target("filter:features.0:0", ts)


# --------------------------------------------------------------------------- unicode and long names

HOSTILE_NAMES = ["../../etc/passwd", "🐟" * 100, "a" * 5000, "CON", "con.txt", ".", "..", "x\ny", "NUL\x00byte", "\u202eevil\u202c", "名前/スラッシュ", " "]


def test_hostile_class_names_make_safe_short_file_names(tmp_path):
    torch.manual_seed(0)
    clf = Classifier("hostile", TinyNet(n_classes=len(HOSTILE_NAMES)), 32, (0.5,) * 3, (0.5,) * 3, list(HOSTILE_NAMES))
    targets = [parse_target(f"class:{i}", clf) for i in range(len(HOSTILE_NAMES))]
    out = tmp_path / "out"
    records = generate(clf, targets, make_preset("pixel", steps=1, size=16), out)
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 * len(HOSTILE_NAMES)  # every target its own files, none outside
    assert {p.split(os.sep)[0] for p in tree(tmp_path)} == {"out"}
    for n in names:
        assert n.isascii() and len(n) <= 80 and "/" not in n and not n.startswith(".")
    assert [r["target_label"] for r in records] == HOSTILE_NAMES  # the label keeps the real name


@pytest.mark.parametrize("spec", ["x" * 600, "🐟🐟", "../../../etc/passwd", "efficientnet_lite0\x00.pt", "", "   "])
def test_hostile_model_names_are_input_errors(spec):
    with pytest.raises(InputError) as e:
        load_classifier(spec, device="cpu")
    one_line(e)


def test_overlong_targets_are_refused_before_any_lookup():
    with pytest.raises(InputError, match="too long"):
        parse_target("class:" + "a" * 600, CLF)
    with pytest.raises(InputError, match="too long"):
        parse_target("classes:" + "+".join(["tench"] * 100), CLF)


@pytest.mark.parametrize("text", ["class:" + "🐟" * 100, "class:" + "a" * 499, "x" * 10_000, "class:tench\x00", "class:\u202etench", "🐟:🐟", "class:名前", "\n\n\n", "classes:" + "+" * 400])
def test_unicode_and_long_targets_are_one_line_input_errors(text):
    with pytest.raises(InputError) as e:
        parse_target(text, CLF)
    one_line(e)


# --------------------------------------------------------------------------- hypothesis: target parsing

KINDS = st.sampled_from(["class", "classes", "filter", "neuron", "group", "CLASS", "", "x"])
PIECES = st.sampled_from(["tench", "hen", "0", "9", "10", "features.0", "features.2", "fc", "+", ",", "*", ":", "*0.5", "*1e3", "-", " ", "..", "🐟", "\x00", "99999999"])


@FAST
@given(st.text(max_size=600))
def test_parse_target_of_any_text_is_a_target_or_an_input_error(text):
    _parse_or_input_error(text)


@FAST
@given(KINDS, st.lists(PIECES, max_size=12))
def test_parse_target_of_near_miss_grammar_is_a_target_or_an_input_error(kind, pieces):
    _parse_or_input_error(kind + ":" + "".join(pieces))


def _parse_or_input_error(text: str) -> None:
    try:
        target = parse_target(text, CLF)
    except InputError as e:
        assert str(e) and "\n" not in str(e) and len(str(e)) < 1000
        return
    assert isinstance(target, Target)
    assert parse_target(target.spec, CLF) == target  # the canonical form parses back
    assert target.slug.isascii() and 0 < len(target.slug) <= 80
    if target.is_class:
        assert all(0 <= u < CLF.n_classes for u in target.units)


# --------------------------------------------------------------------------- the CLI


def test_the_cli_turns_hostile_numbers_into_one_line_and_exit_2(tmp_path, capsys, torchscript_model):
    from dgncore.__main__ import main

    base = ["generate", "--model", str(torchscript_model), "--method", "pixel", "--out", str(tmp_path / "out")]
    for extra in (["--target", "class:0", "--steps", "-5"], ["--target", "class:0", "--seed", "-1"], ["--target", "class:0", "--size", "999999"],
                  ["--target", "class:99999"], ["--target", "filter:nope:1"], ["--target", "class:0", "--steps", "lots"]):
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, (extra, err)
    assert not (tmp_path / "out").exists()
