"""Every real file sunpy ships of the kinds we read either loads or is refused in one line that
names what is unsupported: never a traceback."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sunpy.data.test import get_test_filepath

from sdofm.cli import main
from sdofm.sources.calibrate import Reject, file_kind
from sdofm.sources.ingest import ingest_fits, qc_path

JP2 = [
    "2013_06_24__17_31_30_84__SDO_AIA_AIA_193.jp2",
    "2023_01_31__03_39_23_200__SDO_HMI_HMI_continuum.jp2",
    "2013_05_13__16_54_06_137__SOHO_LASCO_C3_white-light.jp2",
    "2022_04_01__00_00_45__SOLO-EUI-FSI_EUI_FSI_174.jp2",
]


def _reason(path: Path, tmp_path: Path, instrument: str = "aia", size: int = 64) -> str:
    out = tmp_path / "store.zarr"
    with pytest.raises(Exception) as err:
        ingest_fits([path], out, image_size=size, instrument=instrument)
    assert "no usable" in str(err.value) and "\n" not in str(err.value)
    reasons = pd.read_csv(qc_path(out))["reason"].tolist()
    assert len(reasons) == 1 and "\n" not in reasons[0]
    return reasons[0]


@pytest.mark.parametrize("name", JP2)
def test_helioviewer_jp2_is_named_with_its_metadata(name, tmp_path):
    reason = _reason(Path(get_test_filepath(name)), tmp_path)
    assert reason.startswith("unsupported file kind JPEG 2000 (JP2)")
    assert "scaled 8-bit" in reason and "level-1 FITS" in reason
    assert "Helioviewer: an image" not in reason  # its XML box names what the image is
    if "AIA_193" in name:
        assert "SDO/AIA_2 193 at 2013-06-24T17:31:31" in reason


def test_hmi_continuum_is_not_a_magnetogram_before_any_size_check(tmp_path):
    """sunpy's 100×100 HMI continuum image: 100 is no multiple of 64, but the reason given is
    what the image is."""
    reason = _reason(Path(get_test_filepath("resampled_hmi.fits")), tmp_path, "hmi", 64)
    assert reason == ("not a magnetogram (CONTENT='CONTINUUM INTENSITY'): only HMI magnetograms")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("sci_xrsf-l2-avg1m_g16_d20210101_truncated.nc", "HDF5/netCDF-4"),
        ("psp_fld_l2_mag_rtn_1min_20200104_v02.cdf", "NASA CDF"),
        ("aiamap_genericmap_1.0.0.asdf", "ASDF"),
        ("observed-solar-cycle-indices-truncated.json", "text"),
        ("not_actually_fits.fits", "text"),
    ],
)
def test_other_kinds_are_named(name, kind):
    with pytest.raises(Reject, match=rf"unsupported file kind {kind}"):
        file_kind(Path(get_test_filepath(name)))


def test_real_fits_and_gzip_fits_are_fits():
    for name in ("aia_171_level1.fits", "go1520120601.fits.gz", "resampled_hmi.fits"):
        assert file_kind(Path(get_test_filepath(name))) == "fits"


def test_cli_refuses_a_jp2_in_one_line(tmp_path, capsys):
    code = main(["ingest", get_test_filepath(JP2[0]), "--out", str(tmp_path / "x.zarr")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and "Traceback" not in err
    assert err.startswith("sdofm ingest: error: no usable AIA FITS among 1 files")
    assert "JPEG 2000" in pd.read_csv(qc_path(tmp_path / "x.zarr"))["reason"][0]
