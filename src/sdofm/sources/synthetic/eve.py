"""EVE MEGS-A line irradiances driven by the disk-integrated AIA emission."""

from __future__ import annotations

import numpy as np

__all__ = ["EVE_LINES", "eve_irradiance"]

# MEGS-A lines of the virtual-EVE task (Szenicer et al. 2019): base irradiance (W/m²) at the
# quiet-Sun drive, non-linearity exponent, and weights of the AIA channels that see the line's
# formation temperature.
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
NOISE = 0.003  # relative measurement noise of MEGS-A


def eve_irradiance(
    relative: dict[str, np.ndarray], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Line irradiances from each channel's disk-integrated emission relative to the quiet Sun."""
    n = len(next(iter(relative.values())))
    out = {}
    for line, (base, power, weights) in EVE_LINES.items():
        drive = sum(w * relative[ch] for ch, w in weights.items())
        out[line] = base * drive**power * (1.0 + rng.normal(0.0, NOISE, n))
    return out
