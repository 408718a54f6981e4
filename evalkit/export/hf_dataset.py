"""The trial table as a Hugging Face dataset folder: ``data/train-00000-of-00001.parquet`` and a ``README.md`` card.

The layout the Hub serves as it is (upload the folder), and ``datasets.load_dataset(FOLDER)`` reads locally with the
declared features (the Parquet file carries them). Needs ``datasets`` (``pip install "evalkit[export]"``).
"""

from __future__ import annotations

from pathlib import Path

from evalkit.export.card import dataset_card
from evalkit.export.parquet import arrow_table
from evalkit.export.table import TrialTable

DATA_FILE = Path("data") / "train-00000-of-00001.parquet"
CARD_FILE = "README.md"


def write_hf_dataset(table: TrialTable, folder: Path, title: str) -> Path:
    """Write the dataset folder ``folder`` (created if needed; its two files replaced); return the folder."""
    import datasets
    import pyarrow.parquet as pq

    types = {"int": "int64", "float": "float64", "str": "string", "bool": "bool", "json": "string"}
    features = datasets.Features({c.name: datasets.Value(types[c.kind]) for c in table.columns})
    arrow = arrow_table(table)
    # the features as ``datasets`` writes them into a file's schema, beside evalkit's header
    arrow = arrow.replace_schema_metadata({**arrow.schema.metadata, **features.arrow_schema.metadata})
    (folder / DATA_FILE).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(arrow, folder / DATA_FILE)
    (folder / CARD_FILE).write_text(dataset_card(table, title), encoding="utf-8")
    return folder
