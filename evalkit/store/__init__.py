"""The run directory: ``format.py`` owns its format (names, header, records, attention arrays); ``run_store.py`` holds a live run."""
