"""Export a run directory's finished trials: Parquet, a Hugging Face dataset folder, Inspect AI logs.

The stage after ``report/``: it reads records through ``report/data`` (``load_results``) and the attention arrays
through ``store/``, and writes nothing back into the run's records. ``evalkit export`` is its command.
"""

from evalkit.export.exporter import FORMATS, ExportResult, export_run
from evalkit.export.table import ExportColumn, TrialTable, trial_table

__all__ = ["FORMATS", "ExportColumn", "ExportResult", "TrialTable", "export_run", "trial_table"]
