"""A normal (non-editable) `pip install` of the repository works outside it.

The package is installed into a fresh virtual environment, offline and without dependencies
(they come from this environment's site-packages through a ``.pth`` file, which does not pull in
the editable install of the checkout), then used from a folder outside the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, working_tree_copy


def _run(*cmd, extra: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """A command without this checkout on PYTHONPATH (``extra``: more environment)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A virtual environment with the working tree's package installed (not editable)."""
    root = tmp_path_factory.mktemp("install")
    working_tree_copy(root / "src")  # the build then leaves no trace in the checkout
    venv = root / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    assert _run(base, "-m", "venv", "--without-pip", str(venv)).returncode == 0
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"]
    run = _run(*pip, "--no-deps", "--no-build-isolation", "--no-index", str(root / "src"))
    assert run.returncode == 0, run.stderr
    return venv


def test_the_installed_package_carries_its_data(installed):
    code = "import sdofm, sys; print(sdofm.__file__)"
    run = _run(str(installed / "bin" / "python"), "-c", code, cwd=installed.parent)
    package = Path(run.stdout.strip()).parent
    assert package.is_relative_to(installed), run.stdout + run.stderr
    schema = package / "config.schema.yaml"
    assert not schema.is_symlink()
    assert schema.read_bytes() == (ROOT / "workflow/schemas/config.schema.yaml").read_bytes()
    for data in ("benchmarks/result.schema.json", "reports/templates/offline/index.html.j2"):
        assert (package / data).is_file(), data


def test_the_installed_command_validates_a_config_outside_the_repo(installed, tmp_path):
    sdofm = str(installed / "bin" / "sdofm")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["pretrain"]["mask_ratio"] = 2
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "dataset.zarr").mkdir()
    argv = ["pretrain", "--config", "my.yaml", "--dataset", "dataset.zarr", "--out", "m.ckpt"]
    run = _run(sdofm, *argv, cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr.strip() == (
        "sdofm pretrain: error: config key 'pretrain.mask_ratio': 2 is greater than or equal "
        "to the maximum of 1"
    )
    run = _run(sdofm, "benchmark", "--help", cwd=tmp_path)
    assert run.returncode == 0 and "virtual_eve" in run.stdout, run.stderr


def test_the_rules_conda_environment_installs_the_package(tmp_path):
    """workflow/envs/sdofm.yaml: no relative pip entries; its post-deploy script installs sdofm.

    Run here as Snakemake runs it: from a copy elsewhere, inside the new environment (a venv
    with the pinned dependencies standing in for the conda environment).
    """
    envs = ROOT / "workflow" / "envs"
    env = yaml.safe_load((envs / "sdofm.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert not [p for p in pip if p.startswith("-") or p == "." or p.startswith("./")]
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    assert 'ENV = "../envs/sdofm.yaml"' in common
    for rules in (ROOT / "workflow" / "rules").glob("*.smk"):
        for block in rules.read_text().split("conda:")[1:]:
            assert block.split()[0] == "ENV", rules

    venv = tmp_path / "env"
    base = getattr(sys, "_base_executable", sys.executable)
    assert _run(base, "-m", "venv", "--without-pip", str(venv)).returncode == 0
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = tmp_path / "copy.post-deploy.sh"
    script.write_text((envs / "sdofm.post-deploy.sh").read_text())
    path = f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
    offline = {"PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PATH": path}
    run = _run("bash", str(script), cwd=tmp_path, extra={**offline, "SDOFM_WORKFLOW_ROOT": ""})
    assert run.returncode != 0 and "SDOFM_WORKFLOW_ROOT" in run.stderr
    run = _run("bash", str(script), cwd=tmp_path, extra={**offline, "SDOFM_WORKFLOW_ROOT": ROOT})
    assert run.returncode == 0, run.stdout + run.stderr
    code = "import sdofm.config as c; print(c.SCHEMA_PATH.resolve())"
    run = _run(str(venv / "bin" / "python"), "-c", code, cwd=tmp_path)
    assert run.stdout.strip() == str((ROOT / "workflow/schemas/config.schema.yaml").resolve())


def test_what_the_workflow_catalog_expects():
    """The Snakemake workflow catalog's standardized usage: workflow/Snakefile, config/README.md,
    .snakemake-workflow-catalog.yml, environments in workflow/envs; and the declared licence."""
    import tomllib

    assert (ROOT / "workflow" / "Snakefile").is_file()
    assert "--configfile" in (ROOT / "config" / "README.md").read_text()
    usage = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    assert set(usage) == {"mandatory-flags", "software-stack-deployment", "report"}
    assert usage["software-stack-deployment"]["conda"] is True and usage["report"] is True
    assert list((ROOT / "workflow" / "envs").glob("*.yaml"))
    licence = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert licence == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
