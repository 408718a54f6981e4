"""Reports, step 2: statistics and tables from the records (intervals, indices, comparisons, recommendations, decisions)."""
