"""Drawing a target: image sources, objectives, presets and the optimisation loop."""
