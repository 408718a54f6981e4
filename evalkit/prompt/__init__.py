"""Stage 3: token-exact prompts in the model's own tokens (``builder.py``), with region spans, layouts, controls and checks."""
