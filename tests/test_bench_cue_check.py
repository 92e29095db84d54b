"""bench/cue_check.py: the hand-made text cue and its controls (no photo needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import cue_check as C  # noqa: E402


def test_the_text_cue_and_controls_of_the_same_size_and_ink():
    text = C.text_patch(56)
    cs = C.controls(text)
    assert list(cs) == ["text", "blank", "noise", "shuffled text"]
    assert all(c.shape == (3, 56, 56) and 0 <= float(c.min()) and float(c.max()) <= 1 for c in cs.values())
    assert float(text.mean()) < 0.97 and torch.equal(cs["blank"], torch.ones(3, 56, 56))  # there is ink
    assert abs(float(cs["shuffled text"].mean()) - float(text.mean())) < 1e-6  # the same ink, blocks moved
    assert not torch.equal(cs["shuffled text"], text)
    assert torch.equal(C.text_patch(56), text)  # fixed: the same cue every run
