"""The difficulty search (``evalkit calibrate``): where each model sits near a target accuracy.

``staircase.py`` is the search itself (pure, tested on simulated models), ``steps.py`` runs its trials as run
directories, ``calibrate.py`` searches every model x task of a config and writes the trace and config fragments.
"""
