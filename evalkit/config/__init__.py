"""Stage 1, the YAML boundary: eval configs (``schema.py``), layout axes (``layouts.py``), YAML reading and one-line errors."""
