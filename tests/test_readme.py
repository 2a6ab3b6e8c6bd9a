"""Every command in README.md's (and config/README.md's) code blocks runs as written (dry, or
its options checked).

`snakemake ...` lines are dry-run (`-n`) in a copy of the checkout, `sdofm ...` lines are parsed
by the real command-line parser, `make` targets are dry-run, `python perf/...` scripts answer
`--help` with every option the README gives, and the YAML blocks are valid where they go.
"""

from __future__ import annotations

import copy
import re
import runpy
import shlex
import subprocess
import sys

import pytest
import yaml

from sdofm import SdofmError
from sdofm.cli import _parser
from sdofm.config import validate_config
from tests.conftest import ROOT, snakemake_runs, working_tree_copy

README = (ROOT / "README.md").read_text() + "\n" + (ROOT / "config" / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, re.S | re.M)
DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
KINDS = ("make", "snakemake", "sdofm", "python", "export")


def _commands() -> list[str]:
    """The shell commands of the bash blocks: continuations joined, comments dropped."""
    out = []
    for lang, body in BLOCKS:
        if lang != "bash":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#") and line not in out:
                out.append(line)
    return out


def _of(kind: str) -> list[list[str]]:
    return [shlex.split(c) for c in _commands() if c.split()[0] == kind]


def test_every_command_is_checked_here():
    assert _commands(), "no bash blocks found"
    unchecked = [c for c in _commands() if c.split()[0] not in KINDS]
    assert unchecked == []
    assert [argv[1].split("/")[0] for argv in _of("python")] == ["perf"] * len(_of("python"))


def test_exported_credentials_reach_fsspec():
    """The README's `export` lines name variables fsspec (FSSPEC_<PROTOCOL>[_<OPTION>]) or the
    AWS chain reads: each one, with its placeholder, lands in fsspec's configuration."""
    from fsspec.config import set_conf_env

    exports = [a for argv in _of("export") for a in argv[1:]]
    assert exports, "the README shows how to pass credentials"
    for assignment in exports:
        name, value = assignment.split("=", 1)
        if name.startswith("AWS_"):
            continue  # botocore's own chain (s3fs reads it)
        assert name.startswith("FSSPEC_"), name
        conf: dict = {}
        set_conf_env(conf, {name: value})
        protocol = name.split("_")[1].lower()
        assert conf.get(protocol), (name, conf)


@pytest.mark.parametrize("target", sorted({argv[1] for argv in _of("make")}))
def test_make_targets_exist(target):
    run = subprocess.run(["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_sdofm_commands_parse():
    """Block commands parse completely; inline ones (`sdofm stage --option ...`) name real
    options of their stage."""
    for argv in _of("sdofm"):
        _parser().parse_args(argv[1:])  # SystemExit (a failure) on anything unknown or missing
    inline = re.findall(r"`(sdofm [a-z-]+(?: [^`]*)?)`", README.replace("\n", " "))
    assert len(inline) >= 4
    parsers = _parser()._subparsers._group_actions[0].choices
    for span in inline:
        argv = span.split()
        if argv[1] not in parsers:
            continue  # prose such as `sdofm <stage> --help` or a list of stages
        options = {o for a in parsers[argv[1]]._actions for o in a.option_strings}
        used = {a for a in argv[2:] if a.startswith("-")}
        assert used <= options, (span, used - options)


@pytest.mark.parametrize("argv", _of("python"), ids=lambda a: a[1])
def test_perf_scripts_take_the_options_given(argv, capsys, monkeypatch):
    script = ROOT / argv[1]
    assert script.is_file()
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    monkeypatch.syspath_prepend(str(script.parent))  # as `python perf/x.py` runs it
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    for option in [a for a in argv[2:] if a.startswith("--")]:
        assert option in help_text, option


def _yaml_blocks() -> list[dict]:
    return [yaml.safe_load(body) for lang, body in BLOCKS if lang == "yaml"]


def test_the_real_data_config_is_valid():
    """The README's real-data block, over the default config as Snakemake merges it."""
    block = next(b for b in _yaml_blocks() if "sources" in b)
    config = copy.deepcopy(DEFAULT)
    for section, values in block.items():
        config[section] = {**config.get(section, {}), **values}
    validate_config(config)
    assert config["sources"]["sdoml"].startswith("s3://")


def test_the_sweep_block_is_valid_and_makes_its_points():
    """The README's sweep block, over the default config: valid, one named run per point."""
    from snakemake.utils import Paramspace

    from sdofm.config import pretrain_runs
    from sdofm.sweep import sweep_points, sweep_runs

    block = next(b for b in _yaml_blocks() if "sweep" in b)
    config = validate_config(copy.deepcopy(DEFAULT) | block)
    space = Paramspace(sweep_points(config["sweep"]), filename_params="*")
    runs = sweep_runs(config, pretrain_runs(config["pretrain"]), list(space.instance_patterns))
    assert len(runs) == len(block["sweep"]["grid"]["mask_ratio"]) >= 3


def test_slurm_snippets_name_a_rule():
    rules = set(re.findall(r"^rule (\w+):", _rule_text(), re.M))
    snippets = [b for b in _yaml_blocks() if not {"sources", "sweep"} & set(b)]
    assert len(snippets) >= 3
    for snippet in snippets:
        (rule,) = snippet
        assert rule in rules
        assert snippet[rule]["slurm_partition"]


def _rule_text() -> str:
    return "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))


def test_quoted_configuration_errors_are_what_validation_says():
    """Each `config key '...': ...` message the README quotes, reproduced."""
    quoted = re.findall(r"`(config key '([\w.]+)': ([^`]*))`", README.replace("\n", " "))
    assert len(quoted) >= 3
    for message, key, rest in quoted:
        config = copy.deepcopy(DEFAULT)
        *path, leaf = key.split(".")
        block = config
        for part in path:
            block = block[part]
        if rest.startswith("is not a known key"):
            block[leaf] = 1
        else:
            block[leaf] = yaml.safe_load(rest.split(" is ")[0])
        with pytest.raises(SdofmError) as err:
            validate_config(config)
        assert str(err.value) == re.sub(r"\s+", " ", message)


@pytest.mark.workflow
def test_snakemake_commands_dry_run_from_a_fresh_checkout(tmp_path):
    """The README's snakemake lines from the repository root (as a user types them), plus the
    unknown-task target it describes."""
    clone = working_tree_copy(tmp_path / "clone")
    (clone / "my.yaml").write_text("pretrain:\n  max_epochs: 1\n")
    commands = [argv[1:] for argv in _of("snakemake")]
    assert ["--cores", "2", "--configfile", "my.yaml", "--", "all"] in commands
    nosuch = ["results/nosuch/report.html"]
    large = ["--configfile", "config/synthetic_large.yaml", "--", "all"]
    results = snakemake_runs(clone, [*commands, nosuch, large])
    for result in results:
        argv, code, output = result["argv"], result["code"], result["output"]
        if argv == nosuch:
            assert code == 1
            assert re.search(r"'nosuch' is not a benchmark task \(this config runs: \w+", output)
        elif "--report" in argv:  # -n builds no report: it gets as far as the missing results
            assert "marked for report but does not exist" in output, output[-2000:]
        else:
            assert code == 0, (argv, output[-3000:])
            assert "This was a dry-run" in output, (argv, output[-3000:])
    # The preset's own usage line is the form that was dry-run above.
    assert (
        "--configfile config/synthetic_large.yaml -- all"
        in (clone / "config" / "synthetic_large.yaml").read_text()
    )
