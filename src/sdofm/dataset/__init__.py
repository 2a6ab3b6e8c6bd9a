"""The ML-ready store: alignment, leak-free splits, train-only normalisation, loading."""
