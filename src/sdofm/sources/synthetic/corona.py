"""Warm coronal loops of the synthetic Sun's regions: a temperature per region and the 211 Å
envelope.

Fe XIV 211 Å (log T ≈ 6.3, ~2 MK) sees the warm loops that connect a region's polarities and
reach well beyond the compact footprint the cooler (171, 193 Å) and the hot (94, 335 Å) channels
show. Each region has its own loop temperature: hotter for more flux (longer, denser loops) and
for sheared, complex cores, cooling as the region decays, with a scatter of its own. The
envelope's 211 Å brightness is the region's emission measure seen through a DEM-like Gaussian
response in log T, and its width grows with the temperature (longer loops) and with age (the
field disperses). The other channels' share of the envelope is neglected, so a pixel's 211 Å
value depends on the region it belongs to, which only the neighbourhood shows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sdofm.sources.synthetic.sun import RegionState

__all__ = ["add_loop_temperatures", "envelopes", "loop_logt", "parameters"]

LOGT_REF = 6.25  # loop temperature (log10 K) of a β region of 3e21 Mx
LOGT_PER_DEX = 0.15  # per dex of current flux (so regions cool as they decay)
LOGT_PER_COMPLEXITY = 0.06  # per step of complexity (sheared cores heat their loops)
LOGT_SCATTER = 0.08  # a region's own offset (drawn once, kept for its life)
RESPONSE_LOGT = 6.3  # peak of the 211 Å response (Fe XIV)
DEM_WIDTH = 0.2  # width (dex) of the response convolved with the regions' DEM
ENVELOPE_WIDTH = 2.5  # envelope width relative to the spot separation, at LOGT_REF and emergence
ENVELOPE_SPREAD = 0.3  # relative widening per lifetime of age (capped at two lifetimes)
ENVELOPE_MAX_DEG = 10.0  # widest envelope (σ ~120 Mm): the loops of the largest regions


def add_loop_temperatures(regions: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """``regions`` with each region's own loop-temperature offset (dex), ``loop_dlogt``."""
    return regions.assign(loop_dlogt=rng.normal(0.0, LOGT_SCATTER, len(regions)))


def loop_logt(state: RegionState, dlogt: np.ndarray) -> np.ndarray:
    """Loop temperature (log10 K) of the regions of ``state`` (``dlogt``: their offsets)."""
    flux = np.log10(np.maximum(state.flux, 1e18) / 3e21)
    return LOGT_REF + LOGT_PER_DEX * flux + LOGT_PER_COMPLEXITY * (state.complexity - 1) + dlogt


def envelopes(
    state: RegionState, dlogt: np.ndarray, lifetime: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(211 Å response relative to a region at `LOGT_REF`, envelope width in rad) per region."""
    logt = loop_logt(state, dlogt)
    response = np.exp(-0.5 * ((logt - RESPONSE_LOGT) / DEM_WIDTH) ** 2)
    ref = np.exp(-0.5 * ((LOGT_REF - RESPONSE_LOGT) / DEM_WIDTH) ** 2)
    spread = 1.0 + ENVELOPE_SPREAD * np.clip(state.age / lifetime, 0.0, 2.0)
    width = ENVELOPE_WIDTH * np.deg2rad(state.separation) * 10 ** (logt - LOGT_REF) * spread
    return response / ref, np.minimum(width, np.deg2rad(ENVELOPE_MAX_DEG))


def parameters() -> dict[str, float]:
    """The constants above (ground truth, for parameters.json; the offsets are in regions.csv)."""
    names = ("LOGT_REF", "LOGT_PER_DEX", "LOGT_PER_COMPLEXITY", "LOGT_SCATTER", "RESPONSE_LOGT")
    names += ("DEM_WIDTH", "ENVELOPE_WIDTH", "ENVELOPE_SPREAD", "ENVELOPE_MAX_DEG")
    return {name.lower(): globals()[name] for name in names}
