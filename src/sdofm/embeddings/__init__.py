"""Embeddings of every time step from a pretrained backbone."""
