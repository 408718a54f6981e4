"""Reports, step 3: one ``plot_x(table, ax)`` per chart, drawn from the analysis tables."""
