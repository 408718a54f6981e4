"""``evalkit export``: one run directory to Parquet, a Hugging Face dataset folder or Inspect AI logs.

Each format needs libraries evalkit does not install by default (the ``export`` extra); they are looked for
before anything is read, and a missing one is a one-line ExportError saying what to install.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from evalkit.errors import ExportError
from evalkit.export.hf_dataset import write_hf_dataset
from evalkit.export.inspect_log import write_inspect_logs
from evalkit.export.parquet import write_parquet
from evalkit.export.table import TrialTable, trial_table
from evalkit.store.format import EXPORT_DIR, REPORT_ADVICE, disk_errors, run_output

# format -> (the modules it imports, what it writes by default inside RUN_DIR/export/)
FORMATS: dict[str, tuple[tuple[str, ...], str]] = {
    "parquet": (("pyarrow",), "trials.parquet"),
    "hf-dataset": (("datasets", "pyarrow"), "hf-dataset"),
    "inspect": (("inspect_ai",), "inspect"),
}
INSTALL = 'pip install "evalkit[export]"'


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: the file or folder given (or the default), the files in it, the trials."""

    out: Path
    files: tuple[Path, ...]
    trials: int
    skipped: int


def check_format(fmt: str) -> None:
    """ExportError when ``fmt`` is not a format."""
    if fmt not in FORMATS:
        raise ExportError(f"export: --format {fmt!r} is not one of {', '.join(FORMATS)}")


def check_libraries(fmt: str) -> None:
    """ExportError when a library ``fmt`` needs cannot be imported, saying what to install."""
    missing = [name for name in FORMATS[fmt][0] if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"export --format {fmt}: needs {', '.join(missing)}, which is not installed; {INSTALL}")


def default_out(run_dir: Path, fmt: str) -> Path:
    """Where ``fmt`` is written without ``--out``: ``RUN_DIR/export/<trials.parquet | hf-dataset | inspect>``."""
    return run_output(run_dir, EXPORT_DIR) / FORMATS[fmt][1]


def export_run(run_dir: str | Path, fmt: str, out: str | Path | None = None) -> ExportResult:
    """Export the finished trials of ``run_dir`` as ``fmt`` (``FORMATS``) to ``out`` (a file for parquet, a folder
    for the others; default ``default_out``). RunDirError for a directory without records."""
    check_format(fmt)
    run_dir = Path(run_dir)
    table = trial_table(run_dir)  # a wrong RUN_DIR is said first: installing a library would not fix it
    check_libraries(fmt)
    target = default_out(run_dir, fmt) if out is None else Path(out)
    if fmt == "parquet" and target.is_dir():  # --out FOLDER: the file's default name inside it
        target = target / FORMATS[fmt][1]
    with disk_errors(target, f"write the {fmt} export", REPORT_ADVICE):
        files = _write(table, fmt, target)
    return ExportResult(target, tuple(files), table.trials, table.skipped)


def _write(table: TrialTable, fmt: str, target: Path) -> list[Path]:
    if fmt == "parquet":
        return [write_parquet(table, target)]
    if fmt == "hf-dataset":
        folder = write_hf_dataset(table, target, title=f"evalkit: {table.run_dir.resolve().name}")
        return sorted(p for p in folder.rglob("*") if p.is_file())
    return write_inspect_logs(table, target)
