"""Independent Suns: a later Sun (``synthetic.suns``) shares the instruments, nothing else.

A test split inside a later Sun's time is the strongest leak guard the synthetic Sun offers:
no training row saw that Sun. These tests check that it really is another Sun: its images,
flares and regions do not depend on the Sun before it, none of the earlier Sun's regions or
flares reach into it, and the configuration is refused before any compute when the Suns
overlap or share a seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from sdofm import SdofmError
from sdofm.config import validate_config
from sdofm.sources.synthetic import SyntheticSun
from sdofm.sources.synthetic.model import SunModel
from sdofm.sources.synthetic.sun import region_states

SWITCH = pd.Timestamp("2011-03-01")
SUN = SyntheticSun(
    seed=1,
    start="2011-01-01",
    end="2011-05-01",
    image_size=32,
    regions_per_day=1.0,
    suns=(("2011-03-01", 43),),
)


@pytest.fixture(scope="module")
def two_first_suns() -> tuple[SunModel, SunModel]:
    """The same held-out Sun (seed 43) after two different first Suns (seeds 1 and 2)."""
    return SunModel(SUN), SunModel(dataclasses.replace(SUN, seed=2))


def _images(model: SunModel, t: pd.Timestamp) -> np.ndarray:
    _, br, aia = model.render(t, 32)
    return np.stack([br, *aia.values()])


def test_the_held_out_sun_does_not_depend_on_the_sun_before(two_first_suns):
    a, b = two_first_suns
    for t in (SWITCH, SWITCH + pd.Timedelta(days=20), pd.Timestamp("2011-04-30T12:00")):
        np.testing.assert_array_equal(_images(a, t), _images(b, t), err_msg=str(t))
    before = SWITCH - pd.Timedelta(hours=12)
    assert not np.allclose(_images(a, before), _images(b, before))

    def later(model):
        f = model.flares[model.flares.peak_time >= SWITCH]
        return f[["peak_time", "peak_flux", "latitude_deg", "longitude_deg"]].reset_index(drop=True)

    assert len(later(a)) > 5
    pd.testing.assert_frame_equal(later(a), later(b))
    cols = ["emergence", "latitude_deg", "flux_mx", "complexity", "loop_dlogt"]
    ra, rb = (m.regions[m.regions.sun_seed == 43][cols].reset_index(drop=True) for m in (a, b))
    pd.testing.assert_frame_equal(ra, rb)


def test_no_region_or_flare_of_one_sun_is_seen_in_the_others_time(two_first_suns):
    model, _ = two_first_suns
    seeds = model.regions.set_index("region_id").sun_seed
    for t in pd.date_range("2011-01-01", "2011-05-01", freq="5D", inclusive="left"):
        state = region_states(model.regions, t)
        assert len(state.region_id) > 0
        assert set(seeds[state.region_id]) == {SUN.sun_seed([t])[0]}, t
    # Regions of the first Sun that would still live after the switch are gone, not faded.
    cut = model.regions[
        (model.regions.sun_seed == 1) & (model.regions.emergence > SWITCH - pd.Timedelta(days=5))
    ]
    assert len(cut) > 0
    # Flares: each peaks in its own Sun's time, and the first Sun's end 6 h before the switch.
    sun_of_flare = seeds[model.flares.region_id].to_numpy()
    assert np.array_equal(sun_of_flare, SUN.sun_seed(model.flares.peak_time))
    first = model.flares[sun_of_flare == 1]
    assert first.peak_time.max() < SWITCH - pd.Timedelta(hours=6)
    assert model.regions.region_id.is_unique and model.regions.noaa_number.is_unique


def test_the_first_sun_alone_is_the_sun_of_its_seed():
    """Without later Suns nothing changes: the catalogue of a seed is the one it always was."""
    alone = dataclasses.replace(SUN, suns=())
    model = SunModel(alone)
    assert set(model.regions.sun_seed) == {1}
    assert (model.regions.sun_end == pd.Timestamp(alone.end)).all()
    assert alone.sun_seed(pd.date_range(alone.start, alone.end, freq="7D")).tolist() == [1] * 18


@pytest.mark.parametrize(
    ("suns", "message"),
    [
        ([["2011-03-01", 1]], "repeat"),
        ([["2011-03-01", 43], ["2011-02-01", 44]], "must start after"),
        ([["2012-03-01", 43]], "must start after"),
    ],
)
def test_overlapping_or_repeated_suns_are_refused_before_any_compute(tiny_config, suns, message):
    config = tiny_config | {"synthetic": tiny_config["synthetic"] | {"seed": 1, "suns": suns}}
    with pytest.raises(SdofmError, match=message) as err:
        validate_config(config)
    assert "\n" not in str(err.value) and "synthetic.suns" in str(err.value)
