"""Reports from run directories: records -> DataFrame -> tables, charts, ``report.md`` and ``report.html``.

Import this package lazily from the CLI: it imports pandas, matplotlib and seaborn (but sets no
global style or backend). In a notebook::

    from evalkit.report import load_results, plot_heatmap, new_figure
    df = load_results(["reports/runs/a", "reports/runs/b"])
    fig = new_figure(); plot_heatmap(df, ax=fig.add_subplot(), model="smollm2-135m-instruct")
"""

from __future__ import annotations

from evalkit.report.charts.accuracy import new_figure, plot_accuracy_vs_depth, plot_heatmap, save_figure
from evalkit.report.analysis.compare import comparison_table, control_rates, length_comparison
from evalkit.report.charts.compare import (
    plot_accuracy_difference,
    plot_variants_by_length,
    plot_variants_vs_depth,
    variant_colors,
)
from evalkit.report.analysis.indices import (
    BANDS,
    DEFAULT_THRESHOLD,
    band_table,
    effective_context_length,
    length_table,
    parse_threshold,
    position_indices,
)
from evalkit.report.data.labels import add_variants, control_labels, placement_trials
from evalkit.report.data.load import COLUMNS, load_header, load_results
from evalkit.report.render import ReportPaths, finding_text, write_report
from evalkit.report.analysis.clusters import cluster_wilson, cluster_wilson_interval, design_effect
from evalkit.report.analysis.stats import add_wilson_columns, difference_interval, wilson_interval, wilson_intervals
from evalkit.report.analysis.tables import SUMMARY_COLUMNS, depth_length_matrix, summary_table, to_markdown

__all__ = [
    "BANDS",
    "COLUMNS",
    "DEFAULT_THRESHOLD",
    "ReportPaths",
    "SUMMARY_COLUMNS",
    "add_variants",
    "add_wilson_columns",
    "band_table",
    "cluster_wilson",
    "cluster_wilson_interval",
    "comparison_table",
    "control_labels",
    "control_rates",
    "depth_length_matrix",
    "design_effect",
    "difference_interval",
    "effective_context_length",
    "finding_text",
    "length_comparison",
    "length_table",
    "load_header",
    "load_results",
    "new_figure",
    "parse_threshold",
    "placement_trials",
    "plot_accuracy_difference",
    "plot_accuracy_vs_depth",
    "plot_heatmap",
    "plot_variants_by_length",
    "plot_variants_vs_depth",
    "position_indices",
    "save_figure",
    "summary_table",
    "to_markdown",
    "variant_colors",
    "wilson_interval",
    "wilson_intervals",
    "write_report",
]
