"""A run directory written by evalkit before schema 2 (``tests/store/data/schema1_run``) and its config.

The directory was made by ``tests/store/data/make_schema1_run.py`` with the code of commit 1c48c99: one
task, one length, two depths, closed-book and oracle controls, two question positions (8 trials), 6 run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

SCHEMA1_RUN = Path(__file__).parent / "store" / "data" / "schema1_run"
SCHEMA1_CONFIG = {
    "models": [{"name": "./tiny-llama", "dtype": "float32", "device": "cpu", "max_new_tokens": 8}],
    "tasks": ["passkey"],
    "context_lengths": [128],
    "depths": [0.0, 1.0],
    "samples": 1,
    "seed": 3,
    "controls": ["closed_book", "oracle"],
    "layout": {"question_position": ["after", "before"]},
    "output_dir": "run",
}
SCHEMA1_PLANNED = 8
SCHEMA1_DONE = 6


def schema1_workdir(tmp_path: Path, model_dir: Path) -> Path:
    """``tmp_path`` set up as the fixture was made: ``tiny-llama``, ``cfg.yaml`` and a copy of ``run``."""
    import yaml

    shutil.copytree(model_dir, tmp_path / "tiny-llama")
    shutil.copytree(SCHEMA1_RUN, tmp_path / "run")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(SCHEMA1_CONFIG, sort_keys=False))
    return tmp_path
