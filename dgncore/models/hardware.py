"""What the hardware under a run can do, asked rather than assumed.

CPUs differ between machines (one has native bf16 units, another only AVX2), and bf16
autocast on a CPU without them is emulated and several times slower than fp32: every
speed switch asks here first.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

import torch

T = TypeVar("T")


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast runs on native units here (CUDA with bf16, or a CPU with
    AVX512-BF16 / AMX); elsewhere it is emulated and slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def in_passing_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a thread that ends when it returns (its exception is
    raised here). Torch's OpenMP keeps a team of threads for each thread that ran parallel
    work; a long-lived one (a web server's script thread) keeps its team busy beside the
    job loop on the same cores and slowed it 1.7x (bench/README.md, "click_to_picture.py").
    A thread that ends takes its team with it."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the caller as it is
            box["error"] = e

    thread = threading.Thread(target=work, name="dgn-passing", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


__all__ = ["in_passing_thread", "native_bf16"]
