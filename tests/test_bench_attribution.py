"""bench/attribution_peers.py: the held-out images' masks and the fixed verdict rules (captum itself is a bench extra)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import attribution_peers as A  # noqa: E402

from dgncore.audit import planted as P  # noqa: E402


@pytest.mark.parametrize("cue", ["stamp", "sticker", "stripes", "invisible"])
def test_held_out_images_carry_the_cue_with_its_pixels_and_the_shapes(cue):
    cfg = P.config_for(cue, control=True)
    images, cue_pixels, shape = A.held_out(cfg, 6)
    assert images.shape == (6, 3, P.SIZE, P.SIZE) and cue_pixels.shape == shape.shape == (6, 1, P.SIZE, P.SIZE)
    covered = cue_pixels.mean((1, 2, 3))
    if cue in A.PLACED:  # a small patch on every image
        assert bool(((covered > 0.005) & (covered < 0.1)).all())
    assert bool(((shape.mean((1, 2, 3)) > 0.03) & (shape.mean((1, 2, 3)) < 0.6)).all())  # a triangle, not the whole image
    again = A.held_out(cfg, 6)[0]
    assert torch.equal(images, again)  # the same images for every model of a kind


def test_the_rules_fixed_before_the_results():
    assert A.verdict("stamp", 0.2, 0.1) == "found" and A.verdict("stamp", 0.19, 0.1) == "none"
    assert A.verdict("sepia", 0.91, 0.8) == "found" and A.verdict("sepia", 0.89, 0.8) == "none"
    m = torch.zeros(1, 1, 4, 4)
    m[..., :2, :] = 1.0
    region = torch.zeros(1, 1, 4, 4)
    region[..., 0, :] = 1.0
    assert A.share(m, region) == pytest.approx(0.5)
