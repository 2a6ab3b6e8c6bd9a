"""Data sources: SDOML v2 stores (cloud or local) and the synthetic Sun."""
