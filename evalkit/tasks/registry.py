"""Find and load tasks by name or path.

Search order for a name: the ``search_dirs`` passed in (e.g. a config's ``task_dirs``), then the
folders of ``EVALKIT_TASKS_PATH`` (``os.pathsep``-separated), then ``./tasks`` of the current working
directory, then the built-in tasks (the checkout's ``tasks/`` folder, or the installed wheel's copy of it:
``evalkit.package_data.builtin_tasks_dir``). The first ``NAME.yaml`` (or ``.yml``) wins.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from evalkit.config.validation_errors import describe_validation_error
from evalkit.config.yaml_io import path_problem, read_yaml_mapping
from evalkit.errors import HaystackError, TaskError
from evalkit.package_data import builtin_tasks_dir
from evalkit.tasks.haystacks import haystack_for_task
from evalkit.tasks.spec import TASK_NAME_PATTERN, TaskSpec

BUILTIN_TASKS_DIR = builtin_tasks_dir()
TASKS_PATH_ENV = "EVALKIT_TASKS_PATH"
TASK_SUFFIXES = (".yaml", ".yml")

_NAME_RE = re.compile(TASK_NAME_PATTERN)


def default_search_dirs() -> tuple[Path, ...]:
    """``EVALKIT_TASKS_PATH`` folders, then ``./tasks`` of the cwd, then the built-in tasks' folder."""
    env = [Path(p).expanduser() for p in os.environ.get(TASKS_PATH_ENV, "").split(os.pathsep) if p.strip()]
    return (*env, Path.cwd() / "tasks", BUILTIN_TASKS_DIR)


def search_path(search_dirs: Sequence[str | Path] = ()) -> tuple[Path, ...]:
    """``search_dirs`` followed by the defaults: existing folders only, each once, in search order."""
    seen: set[Path] = set()
    result: list[Path] = []
    for folder in (*(Path(d).expanduser() for d in search_dirs), *default_search_dirs()):
        key = folder.resolve()
        if key not in seen and folder.is_dir():
            seen.add(key)
            result.append(folder)
    return tuple(result)


def is_task_path(name_or_path: str | Path) -> bool:
    """True when the reference is a file path (has a folder part or a .yaml/.yml suffix), not a name."""
    text = str(name_or_path)
    return isinstance(name_or_path, Path) or "/" in text or os.sep in text or text.endswith(TASK_SUFFIXES)


def find_task(name_or_path: str | Path, search_dirs: Sequence[str | Path] = ()) -> Path:
    """The task file for a name (searched, see module doc) or a path (relative to the cwd)."""
    if is_task_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if path.suffix not in TASK_SUFFIXES:
            raise TaskError(f"{path}: not a task file; give a .yaml file or a task name")
        problem = path_problem(path)
        if problem == "file not found":
            raise TaskError(f"{path}: task file not found; check the path (relative to {Path.cwd()})")
        if problem is not None:  # a FIFO, a device or a symlink loop: say which, never "not found"
            raise TaskError(f"{path}: {problem}; give the path of a task .yaml file")
        return path
    name = str(name_or_path)
    if not _NAME_RE.match(name):
        raise TaskError(
            f"task {name!r}: not a valid task name; use letters, digits, '_', '.' and '-' (or a path to a .yaml file)"
        )
    folders = search_path(search_dirs)
    for folder in folders:
        for suffix in TASK_SUFFIXES:
            candidate = folder / f"{name}{suffix}"
            problem = path_problem(candidate)
            if problem is None:
                return candidate
            if problem != "file not found":  # a FIFO or a link loop by that name: say so, not "unknown task"
                raise TaskError(f"task {name!r}: {candidate}: {problem}; make it a task .yaml file")
    known = _known_names(folders)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    where = ", ".join(str(f) for f in folders) or "no task folder exists"
    raise TaskError(
        f"unknown task {name!r}; {hint}known tasks: {', '.join(known) or 'none'} (searched {where})"
    )


def _known_names(folders: Sequence[Path]) -> list[str]:
    names = {p.stem for folder in folders for p in folder.iterdir() if p.suffix in TASK_SUFFIXES and p.is_file()}
    return sorted(n for n in names if _NAME_RE.match(n))


def load_task_file(path: str | Path) -> TaskSpec:
    """Read and validate one task file; the haystack is built once so missing or empty files fail here."""
    label = str(path)
    raw = read_yaml_mapping(path, TaskError, "name, needle, value, question, answer, ...")
    try:
        task = TaskSpec.model_validate(raw)
    except ValidationError as exc:
        raise TaskError(describe_validation_error(label, exc, TaskSpec)) from None
    stem = Path(path).stem
    if task.name != stem:
        raise TaskError(
            f"{label}: name: {task.name!r} differs from the file name {stem!r}; make them the same "
            "(tasks are found by file name)"
        )
    task._source_path = Path(path)
    if task.documents is not None:  # its corpus loads with the config (whose data_dir may place it)
        return task
    try:
        task.keep_haystack(haystack_for_task(task))  # reads a files haystack now: a bad path fails before any trial
    except HaystackError as exc:
        raise HaystackError(f"{label}: haystack: {exc}") from None
    return task


def load_task(name_or_path: str | Path, search_dirs: Sequence[str | Path] = ()) -> TaskSpec:
    """Find (see ``find_task``) and load a task; raise ``TaskError`` / ``HaystackError`` with the fix."""
    return load_task_file(find_task(name_or_path, search_dirs))


def list_tasks(search_dirs: Sequence[str | Path] = ()) -> list[TaskSpec]:
    """Every task visible from ``search_dirs`` and the defaults, sorted by name (earlier folders shadow later)."""
    folders = search_path(search_dirs)
    return [load_task(name, search_dirs) for name in _known_names(folders)]
