"""Reports, step 1: run directories read into DataFrames (records, attention) through ``store/format.py``."""
