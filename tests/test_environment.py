"""pyproject.toml, environment.yml and constraints.txt pin the same versions."""

import re
import tomllib

import yaml

from tests.conftest import ROOT

CONDA_TO_PIP = {"pytorch": "torch"}


def _norm(name: str) -> str:
    name = re.sub(r"\[.*\]", "", name).strip().lower().replace("_", "-")
    return CONDA_TO_PIP.get(name, name)


def _pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [
        d for ds in project["optional-dependencies"].values() for d in ds
    ]
    pins = {}
    for spec in specs:
        name, _, ver = spec.partition("==")
        assert ver, f"{spec} in pyproject.toml is not pinned with =="
        pins[_norm(name)] = ver.strip()
    return pins


def _environment_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for spec in dep["pip"]:
                if not spec.startswith("-"):
                    name, _, ver = spec.partition("==")
                    pins[_norm(name)] = ver
        elif not dep.startswith(("python", "pip")):
            name, _, ver = dep.partition("=")
            pins[_norm(name)] = ver
    return pins


def test_environment_yml_matches_pyproject():
    assert _environment_pins() == _pyproject_pins()


def test_constraints_agree_with_pyproject():
    lock = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line:
            name, ver = line.split("==")
            lock[_norm(name)] = ver.strip()
    for name, ver in _pyproject_pins().items():
        assert lock.get(name) == ver, (
            f"constraints.txt pins {name}=={lock.get(name)}, pyproject {ver}"
        )


def test_torch_is_pinned():
    assert _pyproject_pins()["torch"] == "2.13.0"
