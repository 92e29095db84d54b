"""The drawing methods, one family a file: each declares its methods (:class:`~dgncore.drawing.presets.Method`)
with their image source, presets, plain words and audit use; :mod:`dgncore.drawing.registry` lists them."""
