"""evalkit/package_data.py in a checkout: the top-level tasks/ and configs/, the version, configs by name.

The installed wheel's side (its package-data folders) is tests/test_wheel.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import evalkit
from evalkit.cli import main
from evalkit.package_data import (
    builtin_configs,
    builtin_configs_dir,
    builtin_tasks_dir,
    package_version,
    resolve_config_path,
)
from evalkit.tasks import BUILTIN_TASKS_DIR, load_task

REPO = Path(__file__).resolve().parents[1]


def test_a_checkout_uses_its_top_level_folders():
    assert builtin_tasks_dir() == BUILTIN_TASKS_DIR == REPO / "tasks"
    assert builtin_configs_dir() == REPO / "configs"
    assert set(builtin_configs()) == {path.stem for path in (REPO / "configs").glob("*.yaml")}


def test_a_builtin_task_loads_from_another_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./tasks here: the name is found among the built-in tasks
    assert load_task("passkey").source_path == REPO / "tasks" / "passkey.yaml"


def test_the_version_is_the_pyprojects():
    tomllib = pytest.importorskip("tomllib")
    expected = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert package_version() == evalkit.__version__ == expected


def test_evalkit_version_prints_it(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"evalkit {package_version()}"


def test_a_bare_name_is_an_example_config_unless_a_file_has_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path(Path("quickstart")) == REPO / "configs" / "quickstart.yaml"
    assert resolve_config_path(Path("nonesuch")) == Path("nonesuch")  # load_config says the file is missing
    assert resolve_config_path(Path("configs/quickstart.yaml")) == Path("configs/quickstart.yaml")  # as written
    (tmp_path / "quickstart").write_text("models: []\n")
    assert resolve_config_path(Path("quickstart")) == Path("quickstart")  # the user's own file wins


def test_list_configs_names_each_with_its_file(capsys):
    assert main(["list", "configs"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert {line.split()[0]: Path(line.split()[1]) for line in lines} == builtin_configs()


def test_the_run_header_names_this_checkouts_version_even_without_installed_metadata(monkeypatch):
    import importlib.metadata as md

    from evalkit.run.preflight import library_versions

    real = md.version

    def version(name):  # no evalkit distribution installed: the checkout is run with PYTHONPATH alone
        if name == "evalkit":
            raise md.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(md, "version", version)
    versions = library_versions()
    assert versions["evalkit"] == package_version() == evalkit.__version__ != "not installed"
    assert versions["transformers"] == real("transformers")
