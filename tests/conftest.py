"""Shared fixtures: a tiny classifier (fast on 2 cores) standing in for a real one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgncore.models.classifiers import Classifier

TINY_CLASSES = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead", "electric ray", "stingray", "cock", "hen", "ostrich"]


class TinyNet(nn.Module):
    def __init__(self, n_classes: int = len(TINY_CLASSES)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def make_tiny_classifier(seed: int = 0, input_size: int = 32) -> Classifier:
    torch.manual_seed(seed)
    net = TinyNet()
    with torch.no_grad():  # a random net with a decisive head, so that targets are reachable
        net.fc.weight.mul_(30)
    return Classifier("tiny", net, input_size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), list(TINY_CLASSES))


@pytest.fixture
def tiny_classifier() -> Classifier:
    return make_tiny_classifier()
