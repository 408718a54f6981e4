"""The trial table as one Parquet file: typed columns, the run's header in the file's metadata.

Needs pyarrow (``pip install "evalkit[export]"``), imported when a file is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from evalkit.export.table import TrialTable

if TYPE_CHECKING:
    import pyarrow as pa

HEADER_KEY = b"evalkit.header"  # schema metadata: header.json of the run, as JSON text
KIND_KEY = b"evalkit.kind"  # field metadata: the column's kind (``json`` marks JSON text)


def arrow_table(table: TrialTable) -> pa.Table:
    """The trial table as a pyarrow Table with one declared type per column and the header as metadata."""
    import pyarrow as pa

    types = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(), "bool": pa.bool_(), "json": pa.string()}
    fields, arrays = [], []
    for column in table.columns:
        metadata = {KIND_KEY: column.kind.encode(), b"description": column.description.encode()}
        fields.append(pa.field(column.name, types[column.kind], nullable=column.nullable, metadata=metadata))
        arrays.append(pa.array(column.values, type=types[column.kind]))
    schema = pa.schema(fields, metadata={HEADER_KEY: json.dumps(table.header, sort_keys=True).encode()})
    return pa.Table.from_arrays(arrays, schema=schema)


def write_parquet(table: TrialTable, path: Path) -> Path:
    """Write ``table`` to the Parquet file ``path`` (its folder made if needed); return the path."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(arrow_table(table), path)
    return path
