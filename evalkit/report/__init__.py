"""Reports from run directories: records -> DataFrame -> tables, charts and ``report.md``.

Import this package lazily from the CLI: it imports pandas, matplotlib and seaborn (but sets no
global style or backend).
"""

from __future__ import annotations

from evalkit.report.charts import new_figure, plot_accuracy_vs_depth, plot_heatmap, save_figure
from evalkit.report.load import COLUMNS, load_header, load_results
from evalkit.report.render import ReportPaths, finding_text, write_report
from evalkit.report.stats import add_wilson_columns, wilson_interval, wilson_intervals
from evalkit.report.tables import SUMMARY_COLUMNS, depth_length_matrix, summary_table, to_markdown

__all__ = [
    "COLUMNS",
    "ReportPaths",
    "SUMMARY_COLUMNS",
    "add_wilson_columns",
    "depth_length_matrix",
    "finding_text",
    "load_header",
    "load_results",
    "new_figure",
    "plot_accuracy_vs_depth",
    "plot_heatmap",
    "save_figure",
    "summary_table",
    "to_markdown",
    "wilson_interval",
    "wilson_intervals",
    "write_report",
]
