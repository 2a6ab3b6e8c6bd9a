"""The config schema: defaults, and one-line errors that name the offending key."""

import copy
import datetime as dt

import pytest
import yaml

from sdofm import SdofmError
from sdofm.config import SCHEMA_PATH, check_task, load_config, validate_block, validate_config
from tests.conftest import ROOT, TINY, snakemake_runs

DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def _undescribed(node: dict, path: str) -> list[str]:
    """Keys of a schema node (recursively, through oneOf alternatives) without a description."""
    missing = [] if "description" in node or not path else [path]
    for alt in node.get("oneOf", []):
        missing += [m for m in _undescribed(alt | {"description": "-"}, path) if m != path]
    for name, sub in node.get("properties", {}).items():
        missing += _undescribed(sub, f"{path}.{name}" if path else name)
    return missing


def test_default_config_is_valid_and_schema_documents_every_key():
    config = load_config(ROOT / "config" / "config.yaml")
    assert config["sources"]["sdoml"] == "synthetic"
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    assert _undescribed(schema, "") == []
    assert "per GPU" in schema["properties"]["pretrain"]["properties"]["batch_size"]["description"]


def test_the_walk_finds_a_key_without_description():
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    del schema["properties"]["pretrain"]["properties"]["learning_rate"]["description"]
    del schema["properties"]["sources"]["properties"]["fits"]["oneOf"][1]["properties"]["aia"][
        "description"
    ]
    assert _undescribed(schema, "") == ["sources.fits.aia", "pretrain.learning_rate"]


def test_the_package_ships_the_workflow_schema():
    """One schema: the package's data file is the workflow's (a link, not a drifting copy)."""
    assert SCHEMA_PATH.parent.name == "sdofm"
    assert SCHEMA_PATH.read_bytes() == (ROOT / "workflow/schemas/config.schema.yaml").read_bytes()


def test_defaults_are_filled_in():
    config = copy.deepcopy(DEFAULT)
    del config["pretrain"]["mask_ratio"]
    assert validate_config(config)["pretrain"]["mask_ratio"] == 0.75


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda c: c["pretrain"].update(max_epochs=0), "pretrain.max_epochs"),
        (lambda c: c["pretrain"].update(mask_ratio=1.5), "pretrain.mask_ratio"),
        (lambda c: c["pretrain"].update(patch_size=6), "pretrain.runs.mae_tiny.patch_size"),
        (lambda c: c["data"].update(aia_channels=["95A"]), "data.aia_channels.0"),
        (lambda c: c["data"].update(start="last tuesday"), "data.start"),
        (lambda c: c["data"].update(end="2010-06-01"), "data.end"),
        (lambda c: c["splits"].update(test=[["2011-12-01", "2011-11-01"]]), "splits.test.0"),
        (
            lambda c: c["benchmarks"]["virtual_eve"].update(head="transformer"),
            "benchmarks.virtual_eve.head",
        ),
        (lambda c: c["data"].pop("start"), "data.start"),
        (lambda c: c.update(pretrian={}), "pretrian"),
        (lambda c: c["data"].update(start="2011-02-30"), "data.start"),
        (
            lambda c: c["benchmarks"]["flare_forecast"].update(min_class="Q1"),
            "benchmarks.flare_forecast.min_class",
        ),
        (
            lambda c: c["benchmarks"]["missing_channel"].update(min_flare_class="big"),
            "benchmarks.missing_channel.min_flare_class",
        ),
        (
            lambda c: c["benchmarks"]["label_efficiency"].update(min_class="Q1"),
            "benchmarks.label_efficiency.min_class",
        ),
        (
            lambda c: c["benchmarks"]["flare_forecast"].update(horizon_hours="1 fortnight"),
            "benchmarks.flare_forecast.horizon_hours",
        ),
        (lambda c: c["splits"].update(test=[["2013-01-01", "2013-02-01"]]), "splits.test.0"),
        (lambda c: c["splits"].update(val=[["2009-01-01", "2010-02-01"]]), "splits.val.0"),
        (
            lambda c: c["data"].update(aia_channels=["94A", "171A"]),
            "benchmarks.missing_channel.target",
        ),
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


def test_unquoted_yaml_dates_are_accepted_as_strings(tmp_path):
    text = (ROOT / "config" / "config.yaml").read_text().replace('"2011-01-01"', "2011-01-01")
    text = text.replace('[["2011-11-01", "2012-01-01"]]', "[[2011-11-01, 2012-01-01 06:00:00]]")
    assert yaml.safe_load(text)["data"]["start"] == dt.date(2011, 1, 1)
    (tmp_path / "c.yaml").write_text(text)
    config = load_config(tmp_path / "c.yaml")
    assert config["data"]["start"] == "2011-01-01"
    assert config["synthetic"]["start"] == "2011-01-01"
    assert config["splits"]["test"] == [["2011-11-01", "2012-01-01T06:00:00"]]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2011-1-1", "'2011-1-1' is not an ISO date or date-time in UTC, e.g. 2011-01-01"),
        ("2011-02-30", "'2011-02-30' is not a day of the calendar (expected an ISO date"),
    ],
)
def test_a_malformed_date_is_one_plain_line(value, expected):
    config = copy.deepcopy(DEFAULT)
    config["data"]["end"] = value
    with pytest.raises(SdofmError) as err:
        validate_config(config)
    message = str(err.value)
    assert message.startswith(f"config key 'data.end': {expected}")
    assert "\\d" not in message and "^" not in message and "\n" not in message


def test_a_mistyped_key_gets_did_you_mean():
    config = copy.deepcopy(DEFAULT)
    config["pretrain"]["learning_rte"] = 0.1
    with pytest.raises(
        SdofmError, match=r"'pretrain.learning_rte': .*did you mean 'learning_rate'"
    ):
        validate_config(config)
    block = {"head": "mlp", "max_epoch": 3}
    with pytest.raises(SdofmError, match=r"'benchmarks.f107.max_epoch'.*'max_epochs'"):
        validate_block(block, "benchmarks", "f107")


@pytest.mark.workflow
def test_the_workflow_checks_and_passes_settings_before_any_job(tmp_path):
    """Snakemake's own start (dry runs): a bad value is one line naming the key, before any
    job; unquoted dates are accepted; collect_events and the pulls get only what they read, so
    changing data.image_size leaves them alone while a new data.end reruns them."""
    configs = {
        "bad": {"benchmarks": {"flare_forecast": {"min_class": "big"}}},
        "unquoted": {"data": {"start": dt.date(2011, 1, 1)}},
        "size": {"data": {"image_size": 64}},
        "end": {"data": {"end": "2011-03-25"}},
    }
    argv = []
    for name, change in configs.items():
        config = yaml.safe_load(TINY.read_text())
        for section, values in change.items():
            config.setdefault(section, {}).update(values)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
        argv.append(["-s", str(ROOT / "workflow/Snakefile"), "-p", f"--configfile={name}.yaml"])
        argv[-1] += [
            "--directory",
            str(tmp_path),
            "results/data/events",
            "results/data/dataset.zarr",
        ]
    argv.append([f"--configfile={TINY}" if a.startswith("--configfile") else a for a in argv[0]])
    bad, unquoted, size, end, tiny = snakemake_runs(tmp_path, argv)
    assert bad["code"] == 1
    assert [line for line in bad["output"].splitlines() if "min_class" in line] == [
        "Invalid configuration: config key 'benchmarks.flare_forecast.min_class': 'big' is not "
        "a GOES X-ray class, a letter A/B/C/M/X and a positive magnitude, e.g. M1.0 or C3.5"
    ]
    assert "simulate_sun" not in bad["output"]  # no job was scheduled
    for run in (unquoted, size, end, tiny):
        assert run["code"] == 0, run["output"][-2000:]

    def commands(run, what):
        return {ln for ln in run["output"].splitlines() if f"sdofm {what} --params" in ln}

    assert commands(size, "events") == commands(tiny, "events") == commands(unquoted, "events")
    assert commands(end, "events") != commands(tiny, "events")
    assert commands(size, "pull") == commands(tiny, "pull") != commands(end, "pull")
    assert commands(size, "build") != commands(tiny, "build")  # the build does read the size


def test_a_target_of_no_configured_task_lists_the_tasks():
    check_task("f107", ["f107", "virtual_eve"])
    with pytest.raises(SdofmError) as err:
        check_task("nosuch", ["f107", "virtual_eve"])
    assert str(err.value).startswith(
        "'nosuch' is not a benchmark task (this config runs: f107, virtual_eve; also known: "
    )
    with pytest.raises(SdofmError, match=r"'flare_forecast' has no benchmarks.flare_forecast"):
        check_task("flare_forecast", ["f107"])


@pytest.mark.parametrize(
    ("hmi", "chosen", "match"),
    [
        # a misspelt name: the schema's enum error with a did-you-mean
        (["Bx", "By", "Bz"], ["Bloss"], r"baseline_channels.0': 'Bloss' is not one of .*"
         r"\(did you mean 'Blos'\?\)"),
        (["Bx", "By", "Bz"], ["bz"], r"did you mean 'Bz'\?"),
        # a real component the data set does not hold: the valid names listed
        (["Bx", "By", "Bz"], ["Blos"], r"'Blos' is not an HMI component of the data set .*"
         r"not derived from the vector field\): valid: \['Bx', 'By', 'Bz'\]"),
        (["Blos"], ["Bz"], r"'Bz' is not an HMI component of the data set: valid: \['Blos'\]"),
        ([], None, r"holds no HMI component"),
    ],
)  # fmt: skip
def test_flare_forecast_baseline_channels_must_be_held_hmi_components(hmi, chosen, match):
    """Checked with the config, before any job: one line naming the key."""
    config = copy.deepcopy(DEFAULT)
    config["data"]["hmi_components"] = hmi
    config["benchmarks"]["flare_forecast"]["baseline_channels"] = chosen
    with pytest.raises(SdofmError, match=match) as err:
        validate_config(config)
    assert "'benchmarks.flare_forecast.baseline_channels" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("hmi", "chosen", "expected"),
    [
        (["Bx", "By", "Bz", "Blos"], ["Blos"], ["Blos"]),
        (["Bx", "By", "Bz", "Blos"], ["Blos", "Bz"], ["Blos", "Bz"]),
        (["Blos"], None, ["Blos"]),  # unset: the paper's line-of-sight field when held
        (["Bx", "By", "Bz", "Blos"], None, ["Blos"]),
        (["Bx", "By", "Bz"], None, ["Bz"]),  # else Bz, as before
    ],
)
def test_flare_forecast_baseline_channels_name_the_held_components(hmi, chosen, expected):
    config = copy.deepcopy(DEFAULT)
    config["data"]["hmi_components"] = hmi
    block = config["benchmarks"]["flare_forecast"]
    if chosen is None:
        block.pop("baseline_channels", None)
    else:
        block["baseline_channels"] = chosen
    assert validate_config(config)["benchmarks"]["flare_forecast"]["baseline_channels"] == expected
