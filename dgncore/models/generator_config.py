"""The shape of the paper's generator G (Table 2), without torch: presets and the method
registry describe G with it, and a page that only lists methods need not import torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

SEED_CHANNELS = 128
SEED_SIZE = 5
N_FEATURES = SEED_CHANNELS * SEED_SIZE * SEED_SIZE  # 3200, as in the paper

#: (channels, kernel) of each stage; sizes run 5 -> 10/9 -> 18/16 -> 32/30 -> 60/58 -> 116/113 -> 226/224.
PAPER_STAGES: tuple[tuple[int, int], ...] = ((512, 2), (256, 3), (256, 3), (128, 3), (128, 4), (64, 3))

NoiseKind = Literal["additive", "multiplicative", "none"]


@dataclass(frozen=True)
class GeneratorConfig:
    """Shape of G. ``width`` scales every stage's channels; ``stages`` cuts the tower short
    for smaller images (6 stages give 224 px, 5 give 113, 4 give 58); the result is then
    resized to ``out_size`` when the two differ."""

    width: float = 1.0
    stages: int = 6
    out_size: int = 224
    #: The paper's untrained code ends differently from its decoder: the last stage is a
    #: single 3-channel valid conv + ReLU + BN instead of the 64-channel stage and a
    #: 3-channel conv + BN (this gives Table 1's 5,240,841 trainable variables).
    rgb_last_stage: bool = False
    #: True for a decoder trained as an autoencoder (BN keeps running statistics and is
    #: used in eval mode afterwards); False for an untrained G, whose BN always uses the
    #: statistics of the image being made (the paper's Keras training-mode behaviour).
    running_stats: bool = False

    def channels(self) -> list[int]:
        return [max(4, int(round(c * self.width))) for c, _ in PAPER_STAGES[: self.stages]]

    @property
    def native_size(self) -> int:
        size = SEED_SIZE
        for _, k in PAPER_STAGES[: self.stages]:
            size = 2 * size - k + 1
        return size

    def to_dict(self) -> dict:
        return asdict(self)
