"""The decoder file: a trained decoder (the image prior of the pretrained method), its mean code and its config, read back safely.

Files: ``CKPT.safetensors`` (``decoder.*`` weights and ``mean_code``, the mean code of
training images that initialises alpha; the GeneratorConfig also sits in the header)
beside ``CKPT.json`` (configs, data, command, loss, seconds). Drawing reads these files;
it never imports the training code."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from dgncore.errors import InputError, one_line
from dgncore.models.generators import N_FEATURES, Generator, GeneratorConfig

MAX_DECODER_BYTES = 200 * 1024**2


def save_decoder(decoder: Generator, mean_code: torch.Tensor, path: str | Path, meta: dict[str, Any]) -> None:
    """Write ``path`` (safetensors: decoder.* and mean_code, float32) and its JSON sidecar."""
    from safetensors.torch import save

    from dgncore.data import write_bytes, write_json

    path = Path(path)
    tensors = {f"decoder.{k}": v.detach().float().contiguous() for k, v in decoder.state_dict().items() if v.is_floating_point()}
    tensors["mean_code"] = mean_code.detach().float().reshape(N_FEATURES).contiguous()
    header = {"format": "dgn-decoder/1", "generator": json.dumps(meta["generator"])}
    write_bytes(save(tensors, metadata=header), path)
    write_json(meta, path.with_suffix(".json"))


def _decoder_file(path: str | Path) -> tuple[Path, str]:
    """(path, short name) of a decoder file that may be read; else an InputError."""
    path = Path(path)
    name = path.name[:80]
    if path.suffix != ".safetensors":
        raise InputError(f"decoder {name} must be a .safetensors file")
    if not path.is_file():
        raise InputError(f"decoder file {name} does not exist (train one with: python -m dgncore pretrain)")
    if path.stat().st_size > MAX_DECODER_BYTES:
        raise InputError(f"decoder {name} is larger than {MAX_DECODER_BYTES >> 20} MB")
    return path, name


def _read_decoder(path: Path, name: str, tensors: bool) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, ({k: f.get_tensor(k) for k in f.keys()} if tensors else {})
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"decoder {name} is not a readable safetensors file ({one_line(e, 80)})") from e


def _generator_config(header: dict[str, str], name: str) -> GeneratorConfig:
    if header.get("format") != "dgn-decoder/1" or "generator" not in header:
        raise InputError(f"decoder {name} has no DGN decoder header (was it written by dgncore pretrain?)")
    try:
        gcfg = json.loads(header["generator"])
        gcfg = GeneratorConfig(**{k: gcfg[k] for k in ("width", "stages", "out_size", "rgb_last_stage", "running_stats")})
        gcfg.channels()
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"decoder {name} has a broken generator config in its header") from e
    return gcfg


def decoder_config(path: str | Path) -> GeneratorConfig:
    """The generator config in a decoder file's header, reading no tensors; anything that
    is not a decoder written by :func:`pretrain` is an InputError."""
    path, name = _decoder_file(path)
    header, _ = _read_decoder(path, name, tensors=False)
    return _generator_config(header, name)


def load_decoder(
    path: str | Path, device: str | torch.device = "cpu", out_size: int | None = None
) -> tuple[Generator, torch.Tensor, dict[str, Any]]:
    """(decoder in eval mode with frozen weights, mean_code (N_FEATURES,), metadata) from a
    decoder file written by :func:`pretrain`; anything else is an InputError. ``out_size``
    overrides the stored output size (only the final resize depends on it)."""
    path, name = _decoder_file(path)
    header, tensors = _read_decoder(path, name, tensors=True)
    gcfg = _generator_config(header, name)
    if out_size is not None:
        gcfg = dataclasses.replace(gcfg, out_size=int(out_size))
    if not (0.03 <= gcfg.width <= 4 and 1 <= gcfg.stages <= 6 and 16 <= gcfg.out_size <= 512 and gcfg.running_stats):
        raise InputError(f"decoder {name} has an unsupported generator config {gcfg}")
    decoder = Generator(gcfg)
    expected = {k: v for k, v in decoder.state_dict().items() if v.is_floating_point()}
    got = {k[len("decoder."):]: v for k, v in tensors.items() if k.startswith("decoder.")}
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or extra or "mean_code" not in tensors:
        what = (["missing " + ", ".join(missing[:3])] if missing else []) + (["unexpected " + ", ".join(extra[:3])] if extra else [])
        what += [] if "mean_code" in tensors else ["no mean_code"]
        raise InputError(f"decoder {name} does not match its generator config: {'; '.join(what)}")
    bad = [k for k, v in expected.items() if got[k].shape != v.shape]
    if bad or tensors["mean_code"].numel() != N_FEATURES:
        raise InputError(f"decoder {name} has tensors of the wrong shape ({', '.join(bad[:3]) or 'mean_code'})")
    decoder.load_state_dict({k: v.float() for k, v in got.items()}, strict=False)
    decoder.eval().requires_grad_(False).to(device)
    meta: dict[str, Any] = {"generator": gcfg.to_dict()}
    sidecar = path.with_suffix(".json")
    if sidecar.is_file() and sidecar.stat().st_size < 10 * 1024**2:
        try:
            meta = {**json.loads(sidecar.read_text("utf-8")), **meta}
        except (ValueError, UnicodeDecodeError):
            pass
    return decoder, tensors["mean_code"].float().reshape(N_FEATURES).to(device), meta
