"""EVE MEGS-A line irradiances driven by the disk-integrated AIA emission."""

from __future__ import annotations

import numpy as np

from sdofm.sources.sdoml_layout import EVE_LINES as SDOML_EVE_LINES

__all__ = ["EVE_LINES", "eve_irradiance"]

# All 39 MEGS-A lines of SDOML v2: base irradiance (W/m²) at the quiet-Sun drive, non-linearity
# exponent, and weights of the AIA channels that see the line's formation temperature. The 14 of
# the virtual-EVE task (Szenicer et al. 2019) first, set by hand; the rest from their log T.
EVE_LINES: dict[str, tuple[float, float, dict[str, float]]] = {
    "Fe XVIII": (2.0e-6, 1.3, {"94A": 1.0}),
    "Fe VIII": (5.0e-6, 0.9, {"131A": 0.7, "171A": 0.3}),
    "Fe XX": (1.0e-6, 1.4, {"131A": 0.5, "94A": 0.5}),
    "Fe IX": (4.0e-5, 0.9, {"171A": 1.0}),
    "Fe X": (3.0e-5, 1.0, {"171A": 0.5, "193A": 0.5}),
    "Fe XI": (3.5e-5, 1.0, {"193A": 1.0}),
    "Fe XII": (2.5e-5, 1.05, {"193A": 0.7, "211A": 0.3}),
    "Fe XIII": (1.5e-5, 1.1, {"211A": 0.6, "193A": 0.4}),
    "Fe XIV": (1.0e-5, 1.15, {"211A": 0.6, "335A": 0.4}),
    "He II": (3.0e-5, 0.85, {"304A": 1.0}),
    "Fe XV": (1.2e-5, 1.2, {"335A": 0.6, "211A": 0.4}),
    "He II_2": (2.0e-4, 0.8, {"304A": 0.8, "1600A": 0.2}),
    "Fe XVI": (8.0e-6, 1.25, {"335A": 1.0}),
    "Mg IX": (6.0e-6, 0.95, {"171A": 0.6, "193A": 0.4}),
}
# Formation temperature (log10 K) each AIA channel mostly sees (131 Å: Fe VIII; 1600 Å: C IV).
CHANNEL_LOGT = {
    "94A": 6.8,
    "131A": 5.6,
    "171A": 5.8,
    "193A": 6.2,
    "211A": 6.3,
    "304A": 4.7,
    "335A": 6.45,
    "1600A": 5.0,
    "1700A": 3.8,
}
# The other 25 SDOML v2 lines: quiet-Sun irradiance (W/m²); drivers follow their temperature.
OTHER_BASE = {
    "Fe XVI_2": 5.0e-6,
    "S XIV": 8.0e-7,
    "Ne VII": 4.0e-6,
    "Si XII": 3.0e-6,
    "Si XII_2": 2.0e-6,
    "O III": 3.0e-6,
    "He I": 6.0e-6,
    "O IV": 5.0e-6,
    "Fe XX_2": 2.0e-7,
    "He I_2": 3.5e-5,
    "Fe XIX": 3.0e-7,
    "O III_2": 8.0e-6,
    "Mg X": 1.2e-5,
    "Mg X_2": 6.0e-6,
    "O V": 2.5e-5,
    "O II": 3.0e-6,
    "Fe XX_3": 3.0e-7,
    "Ne VIII": 6.0e-6,
    "O IV_2": 1.0e-5,
    "O II_2": 1.5e-5,
    "H I": 1.2e-5,
    "H I_2": 3.0e-5,
    "C III": 5.0e-5,
    "H I_3": 6.0e-5,
    "O VI": 2.5e-5,
}


def _by_temperature(logt: float) -> tuple[float, dict[str, float]]:
    """The two AIA channels closest in formation temperature, weighted by that closeness, and a
    non-linearity growing with temperature (hot lines brighten most in active regions)."""
    near = sorted(CHANNEL_LOGT, key=lambda ch: abs(CHANNEL_LOGT[ch] - logt))[:2]
    w = {ch: float(np.exp(-0.5 * ((CHANNEL_LOGT[ch] - logt) / 0.2) ** 2)) + 1e-3 for ch in near}
    total = sum(w.values())
    return float(np.clip(0.8 + 0.25 * (logt - 4.5), 0.8, 1.5)), {
        ch: round(v / total, 3) for ch, v in w.items()
    }


for _name, _ion, _wave, _logt in SDOML_EVE_LINES:
    if _name not in EVE_LINES:
        _power, _weights = _by_temperature(_logt)
        EVE_LINES[_name] = (OTHER_BASE[_name], _power, _weights)
NOISE = 0.003  # relative measurement noise of MEGS-A
LINE_LOGT = {name: logt for name, _ion, _wave, logt in SDOML_EVE_LINES}
HOT_GAIN = 0.3  # brightening of the hottest lines per unit of the hot index


def hot_share(line: str) -> float:
    """How much of a line forms in the hot (> 2 MK) cores of complex regions and flares."""
    return float(np.clip((LINE_LOGT[line] - 6.2) / 0.6, 0.0, 1.0))


def eve_irradiance(
    relative: dict[str, np.ndarray],
    rng: np.random.Generator | None,
    hot: np.ndarray | float = 0.0,
    noise: float = NOISE,
) -> dict[str, np.ndarray]:
    """Line irradiances from each channel's disk-integrated emission relative to the quiet Sun.

    ``hot`` is a DEM-like index of the hot plasma, not a function of the channel means: it
    grows with the square of each region's (and flare's) hot-core emission, so a few bright
    cores raise the hot lines more than many faint ones of the same total. ``noise``: the
    relative measurement noise (0: the lines themselves, ``rng`` unused).
    """
    n = len(next(iter(relative.values())))
    out = {}
    for line, (base, power, weights) in EVE_LINES.items():
        drive = sum(w * relative[ch] for ch, w in weights.items())
        hot_term = 1.0 + HOT_GAIN * hot_share(line) * np.asarray(hot)
        out[line] = base * drive**power * hot_term
        if noise:
            out[line] = out[line] * (1.0 + rng.normal(0.0, noise, n))
    return out
