"""DGN Explorer core: preferred images of a trained classifier through a generator network."""
