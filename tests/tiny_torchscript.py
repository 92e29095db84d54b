"""A tiny TorchScript classifier on disk (model + JSON sidecar), for code that loads a
model by name in another thread or process: the job queue, its RQ workers, the load test."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from conftest import TINY_CLASSES, TinyNet


def save_tiny_torchscript(folder: str | Path, name: str = "tiny", input_size: int = 32, seed: int = 0) -> Path:
    """Write ``folder/name.pt`` and ``folder/name.json``; return the .pt path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = TinyNet()
    with torch.no_grad():
        net.fc.weight.mul_(30)
    path = folder / f"{name}.pt"
    torch.jit.script(net.eval()).save(str(path))
    sidecar = {"input_size": input_size, "mean": [0.5] * 3, "std": [0.5] * 3, "classes": TINY_CLASSES}
    path.with_suffix(".json").write_text(json.dumps(sidecar), encoding="utf-8")
    return path
