"""Every committed config validates from a fresh clone of the repository with nothing beside it.

A user's clone has no ``../shared`` folder of our development machines and no ``reports/runs`` of earlier runs:
a config that reads data or a run from either is refused by ``evalkit validate`` here. The clone is of the
committed ``HEAD`` (what a user gets), in a temporary folder, and validate runs from another empty folder.
A built-in model whose optional package is not installed (``gemma3-270m``, the ``gemma`` extra) is left out of
the copy that is validated, and the test says so; everything else in the config (tasks, data, arms) is checked.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from evalkit.cli import main
from evalkit.models import get_builtin

REPO = Path(__file__).parents[1]
CONFIGS = sorted(path.name for path in (REPO / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory) -> Path:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout of the repository and git")
    target = tmp_path_factory.mktemp("user") / "evalkit"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True)
    assert not (target.parent / "shared").exists()
    return target


def _installed(model_name: str) -> bool:
    spec = get_builtin(model_name)
    return spec is None or importlib.util.find_spec(spec.module) is not None


def test_the_configs_folder_is_what_is_committed(fresh_clone):
    assert sorted(path.name for path in (fresh_clone / "configs").glob("*.yaml")) == CONFIGS


@pytest.mark.parametrize("name", CONFIGS)
def test_a_committed_config_validates_from_a_fresh_clone(fresh_clone, tmp_path, monkeypatch, capsys, name):
    source = fresh_clone / "configs" / name
    config = yaml.safe_load(source.read_text())
    models = [entry for entry in config["models"] if _installed(entry["name"])]
    if not models:
        pytest.skip(f"{name}: none of its built-in models is installed")
    left_out = len(config["models"]) - len(models)
    checked = source
    if left_out:  # beside the original, so every path relative to the config file resolves the same way
        checked = source.with_name(f"{source.stem}.installed-models.yaml")
        checked.write_text(yaml.safe_dump({**config, "models": models}, sort_keys=False))
    monkeypatch.chdir(tmp_path)  # a user's own folder, outside the clone
    code = main(["validate", str(checked)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"{checked}: ok" in captured.out
    assert not any(tmp_path.iterdir())  # validate writes nothing
