"""Where evalkit's shipped files are (the built-in tasks, the example configs, the viewer's assets) and its version.

The one module that locates them, for a checkout and an installed wheel alike. The repository keeps
``tasks/`` and ``configs/`` at its top level; the wheel carries them as package data,
``evalkit/builtin_tasks/`` and ``evalkit/builtin_configs/`` (see ``[tool.setuptools]`` in pyproject.toml).
An editable install or ``PYTHONPATH=checkout`` has no such folders inside the package: there the
checkout's own top-level folders are used. The trial viewer's CSS and script live inside the package
(``evalkit/report/document/assets/``), package data in the wheel and plain files in a checkout alike.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import re
from pathlib import Path

DISTRIBUTION = "evalkit"
# package-data folder inside the installed package -> the checkout's top-level folder it is built from
TASKS_PACKAGE_DIR, TASKS_CHECKOUT_DIR = "builtin_tasks", "tasks"
CONFIGS_PACKAGE_DIR, CONFIGS_CHECKOUT_DIR = "builtin_configs", "configs"
CONFIG_SUFFIXES = (".yaml", ".yml")
VIEWER_ASSETS_PACKAGE, VIEWER_ASSETS_DIR = "evalkit.report.document", "assets"

# evalkit/package_data.py -> the checkout's root (meaningless, and unused, inside site-packages)
_CHECKOUT_ROOT = Path(__file__).resolve().parents[1]
_PYPROJECT = _CHECKOUT_ROOT / "pyproject.toml"


def _shipped_dir(package_dir: str, checkout_dir: str) -> Path:
    """The package-data folder of an installed wheel, else the checkout's top-level folder."""
    packaged = importlib.resources.files("evalkit").joinpath(package_dir)
    # a wheel installs as plain files, so the resource is a real folder (a zipped import would not be)
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return _CHECKOUT_ROOT / checkout_dir


def builtin_tasks_dir() -> Path:
    """The folder of the built-in tasks (``tasks/`` of a checkout, ``evalkit/builtin_tasks`` of a wheel)."""
    return _shipped_dir(TASKS_PACKAGE_DIR, TASKS_CHECKOUT_DIR)


def builtin_configs_dir() -> Path:
    """The folder of the example configs (``configs/`` of a checkout, ``evalkit/builtin_configs`` of a wheel)."""
    return _shipped_dir(CONFIGS_PACKAGE_DIR, CONFIGS_CHECKOUT_DIR)


def builtin_configs() -> dict[str, Path]:
    """The example configs by name (``quickstart`` -> its file), sorted by name."""
    folder = builtin_configs_dir()
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix in CONFIG_SUFFIXES and p.is_file()}


def viewer_asset_text(name: str) -> str:
    """The text of the viewer asset ``name`` (``viewer.css``, ``viewer.js``); universal newlines, so a checkout
    with CRLF line ends reads the same text."""
    folder = importlib.resources.files(VIEWER_ASSETS_PACKAGE).joinpath(VIEWER_ASSETS_DIR)
    return folder.joinpath(name).read_text(encoding="utf-8")


def resolve_config_path(path: Path) -> Path:
    """``path`` itself, or the example config of that name when ``path`` is a bare name that is no file here.

    ``evalkit run quickstart`` thus works from any folder of an installed evalkit; an existing file or
    anything with a folder part or a suffix is taken as written.
    """
    if path.exists() or len(path.parts) != 1 or path.suffix:
        return path
    return builtin_configs().get(str(path), path)


def _checkout_version() -> str | None:
    """``[project] version`` of the checkout's pyproject.toml, when this package lies in an evalkit checkout."""
    try:
        text = _PYPROJECT.read_text(encoding="utf-8")
    except OSError:
        return None
    # a regex, not tomllib: Python 3.10 (supported) has no tomllib, and the table is ours and plain
    project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    if project is None or not re.search(r'^name\s*=\s*"evalkit"\s*$', project.group(1), re.MULTILINE):
        return None
    version = re.search(r'^version\s*=\s*"([^"]+)"\s*$', project.group(1), re.MULTILINE)
    return version.group(1) if version else None


def package_version() -> str:
    """evalkit's version: the checkout's pyproject.toml when run from a checkout, else the installed metadata.

    The checkout comes first: with ``PYTHONPATH=checkout`` the installed metadata may be another copy's.
    """
    checkout = _checkout_version()
    if checkout is not None:
        return checkout
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
