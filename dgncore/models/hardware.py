"""What the hardware under a run can do, asked rather than assumed.

CPUs differ between machines (one has native bf16 units, another only AVX2), and bf16
autocast on a CPU without them is emulated and several times slower than fp32: every
speed switch asks here first.
"""

from __future__ import annotations

import torch


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast runs on native units here (CUDA with bf16, or a CPU with
    AVX512-BF16 / AMX); elsewhere it is emulated and slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


__all__ = ["native_bf16"]
