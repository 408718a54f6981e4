"""The built wheel is a working evalkit on its own: the built-in tasks and example configs inside, from any folder.

The wheel is built from a copy of this checkout's working tree (its package, tasks/, configs/, pyproject.toml
and README.md: a stale build/ folder of the checkout cannot leak into it), then installed with ``--no-deps`` into
a fresh virtual environment that sees the system's packages (torch, transformers, ...), so nothing is downloaded.
Its ``evalkit`` runs from an empty folder outside the checkout, with ``PYTHONPATH`` removed from the environment:
the tests run with ``PYTHONPATH=checkout``, which would otherwise put the checkout's evalkit first on
``sys.path``. (The system's editable install of evalkit, if any, appends its finder after the path-based one,
so the virtual environment's copy wins over it; ``test_the_venv_runs_the_wheels_evalkit`` checks the result.)
About 50 s on two busy CPU cores (build 5 s, venv and install 3 s, ``evalkit validate`` 16 s: torch and the
tokenizer; two quickstart trials about 20 s).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {"tasks": "evalkit/builtin_tasks", "configs": "evalkit/builtin_configs"}  # checkout folder -> wheel folder
BUILD_INPUTS = ("pyproject.toml", "README.md", "evalkit", "tasks", "configs")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _build_command(source: Path, out: Path) -> list[str]:
    """``python -m build`` when installed, else ``pip wheel``: neither may fetch anything (no isolation)."""
    if importlib.util.find_spec("build") is not None:
        return [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(source)]
    return [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index",
            "-w", str(out)]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(_build_command(source, out), check=True, capture_output=True, text=True)
    (built,) = out.glob("evalkit-*.whl")
    return built


def _clean_env() -> dict[str, str]:
    """The environment without what would make the venv's python import another evalkit."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    env["HF_HUB_OFFLINE"] = "1"  # the built-in model ships in a package: nothing may come from the Hub
    return env


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    folder = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(folder)], check=True)
    # the system's pip, run by the venv's python, installs into the venv
    subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    str(wheel)], check=True, env=_clean_env(), capture_output=True, text=True)
    return folder


@pytest.fixture
def empty_folder(tmp_path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    assert REPO not in folder.parents
    return folder


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env or _clean_env(), capture_output=True, text=True, timeout=300)


def test_the_wheel_holds_every_task_config_and_module(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        missing = []
        for folder, packaged in SHIPPED.items():
            for path in _files(REPO / folder):
                name = f"{packaged}/{path.relative_to(REPO / folder).as_posix()}"
                if name not in names:
                    missing.append(name)
                else:
                    assert archive.read(name) == path.read_bytes(), name
    # the package list in pyproject.toml is spelled out: a new subpackage left out of it fails here
    modules = [p.relative_to(REPO).as_posix() for p in _files(REPO / "evalkit") if p.suffix == ".py"]
    missing += [name for name in modules if name not in names]
    assert missing == []
    assert any(name.endswith(".jsonl.gz") for name in names) and any(name.endswith(".md") for name in names)


def test_the_venv_runs_the_wheels_evalkit(venv, empty_folder):
    probe = [str(venv / "bin" / "python"), "-c", "import evalkit; print(evalkit.__file__)"]
    installed = Path(_run(probe, empty_folder).stdout.strip())
    assert venv in installed.parents and "site-packages" in installed.parts
    # what the clean environment guards against: the tests' PYTHONPATH puts the checkout first
    shadowed = Path(_run(probe, empty_folder, {**_clean_env(), "PYTHONPATH": str(REPO)}).stdout.strip())
    assert shadowed == REPO / "evalkit" / "__init__.py"


def test_the_installed_evalkit_lists_its_tasks_and_version(wheel, venv, empty_folder):
    listed = _run([str(venv / "bin" / "evalkit"), "list"], empty_folder)
    assert listed.returncode == 0, listed.stderr
    task_names = {line.split()[0] for line in listed.stdout.split("tasks:")[1].split("built-in models:")[0].splitlines()
                  if line.strip()}
    assert task_names == {path.stem for path in (REPO / "tasks").glob("*.yaml")}
    config_lines = listed.stdout.split("example configs")[1].splitlines()[1:]
    assert {line.split()[0] for line in config_lines} == {path.stem for path in (REPO / "configs").glob("*.yaml")}
    assert all(venv in Path(line.split()[1]).parents for line in config_lines)  # the wheel's copies

    version = _run([str(venv / "bin" / "evalkit"), "--version"], empty_folder)
    expected = wheel.name.split("-")[1]  # the wheel's name carries pyproject's version: evalkit-0.1.0-py3-...
    assert version.returncode == 0 and version.stdout.strip() == f"evalkit {expected}"


def test_the_installed_quickstart_config_validates_from_any_folder(venv, empty_folder):
    result = _run([str(venv / "bin" / "evalkit"), "validate", "quickstart"], empty_folder)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert ": ok (1 models x 1 tasks" in first, result.stdout
    assert venv in Path(first.split(": ok")[0]).parents  # the wheel's quickstart.yaml and its passkey task
    assert list(empty_folder.iterdir()) == []  # validate writes nothing


def test_a_copied_example_config_runs_from_any_folder(venv, empty_folder):
    """What a user of the wheel does first: copy an example config, run two trials, find the records."""
    shutil.copy2(REPO / "configs" / "quickstart.yaml", empty_folder / "my_eval.yaml")
    result = _run([str(venv / "bin" / "evalkit"), "run", "my_eval.yaml", "--limit", "2", "--quiet", "--no-report"],
                  empty_folder)
    assert result.returncode == 0, result.stderr
    records = (empty_folder / "reports" / "runs" / "quickstart" / "trials.jsonl").read_text().splitlines()
    assert len(records) == 2
    assert "2 trials run" in result.stdout


def test_the_wheel_carries_the_viewer_assets_and_its_evalkit_reads_them(wheel, venv, empty_folder):
    assets = REPO / "evalkit" / "report" / "document" / "assets"
    with zipfile.ZipFile(wheel) as archive:
        for name in ("viewer.css", "viewer.js"):
            assert archive.read(f"evalkit/report/document/assets/{name}") == (assets / name).read_bytes()
    probe = ("from evalkit.report.document.viewer_assets import viewer_script; import evalkit; "
             "print(len(viewer_script()), evalkit.__file__)")
    result = _run([str(venv / "bin" / "python"), "-c", probe], empty_folder)
    assert result.returncode == 0, result.stderr
    length, where = result.stdout.split()
    assert int(length) == len((assets / "viewer.js").read_text(encoding="utf-8")) and venv in Path(where).parents
