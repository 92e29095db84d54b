"""The bias audit: which classes lean on a cue, found by drawing them and confirmed by intervention."""
