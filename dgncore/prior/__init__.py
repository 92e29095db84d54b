"""Learned priors: the decoder and its training, procedural images, photo statistics, a dataset's own prior."""
