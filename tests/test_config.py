"""The config schema: defaults, and one-line errors that name the offending key."""

import copy

import pytest
import yaml

from sdofm import SdofmError
from sdofm.config import SCHEMA_PATH, load_config, validate_config
from tests.conftest import ROOT

DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_default_config_is_valid_and_schema_documents_every_key():
    config = load_config(ROOT / "config" / "config.yaml")
    assert config["sources"]["sdoml"] == "synthetic"
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    for section, block in schema["properties"].items():
        assert "description" in block or section in ("pretrain", "embed"), section


def test_defaults_are_filled_in():
    config = copy.deepcopy(DEFAULT)
    del config["pretrain"]["mask_ratio"]
    assert validate_config(config)["pretrain"]["mask_ratio"] == 0.75


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda c: c["pretrain"].update(max_epochs=0), "pretrain.max_epochs"),
        (lambda c: c["pretrain"].update(mask_ratio=1.5), "pretrain.mask_ratio"),
        (lambda c: c["data"].update(aia_channels=["95A"]), "data.aia_channels.0"),
        (lambda c: c["data"].update(start="last tuesday"), "data.start"),
        (lambda c: c["data"].update(end="2010-06-01"), "data.end"),
        (lambda c: c["splits"].update(test=[["2011-12-01", "2011-11-01"]]), "splits.test.0"),
        (
            lambda c: c["benchmarks"]["virtual_eve"].update(head="transformer"),
            "benchmarks.virtual_eve.head",
        ),
        (lambda c: c["data"].pop("start"), "data.start"),
        (lambda c: c.update(pretrian={}), "<top level>"),
    ],
)
def test_bad_values_name_the_key(mutate, key):
    config = copy.deepcopy(DEFAULT)
    mutate(config)
    with pytest.raises(SdofmError) as err:
        validate_config(config)
    message = str(err.value)
    assert f"'{key}'" in message
    assert "\n" not in message


def test_empty_time_range_is_refused():
    config = copy.deepcopy(DEFAULT)
    config["data"]["end"] = config["data"]["start"]
    with pytest.raises(SdofmError, match="time range is empty"):
        validate_config(config)


def test_missing_config_file(tmp_path):
    with pytest.raises(SdofmError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
