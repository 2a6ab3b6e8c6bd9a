"""Write the synthetic Sun: SDOML v2 stores, event lists, indices, FITS files and ground truth.

Generation streams block by block (and EVE/GOES in bounded buffers), so memory does not grow
with the time range; output is written through `atomic_output`. The Sun itself is `model`, the
AIA/HMI frames `frames`, the EVE store `eve_store`, GOES XRS, F10.7 and the flare list `indices`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from sdofm.io import atomic_output
from sdofm.sources.sdoml import AIA_CHANNELS
from sdofm.sources.synthetic import corona
from sdofm.sources.synthetic import flares as fl
from sdofm.sources.synthetic import sun as sun_model
from sdofm.sources.synthetic.eve import EVE_LINES
from sdofm.sources.synthetic.eve_store import EveWriter
from sdofm.sources.synthetic.frames import hmi_noise, render_frames
from sdofm.sources.synthetic.indices import (
    F107_LIMB_DEG,
    write_f107,
    write_flare_lists,
    write_goes,
)
from sdofm.sources.synthetic.instrument import CHANNELS
from sdofm.sources.synthetic.model import SunModel, SyntheticSun
from sdofm.sources.synthetic.sun import RSUN_CM

__all__ = ["SyntheticSun", "generate", "hmi_noise"]


def generate(sun: SyntheticSun, out: str | Path, *, workers: int = 1) -> dict[str, Path]:
    """Write the synthetic Sun to ``out`` and return its top-level entries by name.

    ``workers`` processes render the AIA/HMI frames (1: all in this process); the files are
    the same, byte for byte, for any number.
    """
    with atomic_output(out) as tmp:
        tmp.mkdir()
        model = SunModel(sun)
        truth = tmp / "ground_truth"
        truth.mkdir()  # before the frames: EVE truth after MEGS-A is written as they go
        eve = EveWriter(sun, model, tmp / "sdomlv2_eve.zarr", truth)

        def indices() -> None:  # GOES XRS and F10.7 need no frames: written while they render
            write_goes(sun, model, tmp / "goes_xrs.csv")
            write_f107(sun, model, tmp / "f107.csv")

        disk_means = render_frames(sun, model, tmp, eve, workers=workers, meanwhile=indices)
        disk_means.to_csv(truth / "aia_disk_mean.csv")
        write_flare_lists(model.flares, tmp / "flares.csv", truth / "flares.csv")
        model.degradation.write(tmp / "aia_correction_table.txt")
        days = pd.date_range(pd.Timestamp(sun.start).floor("D"), sun.end, freq="D")
        pd.DataFrame(
            {n: model.degradation.factor(n, days) for n in AIA_CHANNELS}, index=days.rename("time")
        ).to_csv(truth / "degradation.csv")
        model.regions.to_csv(truth / "regions.csv", index=False, date_format="%Y-%m-%dT%H:%M:%S")
        params = {
            "settings": asdict(sun),
            "channels": {n: asdict(c) for n, c in CHANNELS.items()},
            "eve_lines": {
                k: {"base": b, "power": p, "weights": w} for k, (b, p, w) in EVE_LINES.items()
            },
            "flares": {
                "index": fl.FLARE_INDEX,
                "min_peak": fl.MIN_PEAK,
                "rate_per_day": fl.RATE_PER_DAY,
            },
            "rsun_cm": RSUN_CM,
            "spots": {
                "min_sigma_px": sun_model.MIN_SPOT_PX,
                "min_pair_sigmas": sun_model.MIN_PAIR_SIGMAS,
                "delta_share": sun_model.DELTA_SHARE,
                "delta_sigmas": sun_model.DELTA_SIGMAS,
            },
            "network": model.network.to_dict(),
            "corona": corona.parameters(),
            "f107_limb_deg": F107_LIMB_DEG,
            "hmi_noise_g": hmi_noise(sun.image_size),
        }
        (truth / "parameters.json").write_text(json.dumps(params, indent=2))
    return {p.name: p for p in Path(out).iterdir()}
