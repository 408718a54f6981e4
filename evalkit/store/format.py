"""The run-directory format, in one place: file names, the header, record lines, attention arrays.

Layout of ``RUN_DIR``::

    header.json           what defines the run (config, its hash, task hashes, versions, seed, model
                          revisions, the planned trials) and ``schema_version``; where and how long it ran
                          (hardware, each model's template hash, special tokens and size, the end: the keys
                          of ``store/run_facts.py``, absent from older headers)
    trials.jsonl          one TrialRecord per line (``trials.<rank>.jsonl`` per process of a multi-process run)
    prompts.jsonl         with ``save_prompts: true``: the exact token ids and text of every prompt, and
                          (runs since the viewer colours tokens) each token's text, ``token_texts``
    run.lock              pid of the process that holds the directory while it runs (``run.<rank>.lock``)
    attention/<id>.npz    with attention capture: one trial's arrays (see ``TrialAttention``)
    report/               tables and charts written at the end of the run
    export/               what ``evalkit export`` writes by default (Parquet, a dataset folder, Inspect logs)

Schema versions: 2 (this one) gives every grid axis its own record field (``control``, the layout axes,
the document position) and writes ``schema_version`` into the header and every record. Schema 1 (no
version) kept the axes in ``extra``; ``parse_record`` upgrades such lines as it reads them, so old run
directories load, report and resume. The store writes through this module and every reader reads
through it, so no other module knows a file name or parses a line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.errors import RunDirError
from evalkit.types import TrialAttention, TrialRecord

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
HEADER_FILE = "header.json"
RECORDS_FILE = "trials.jsonl"
RECORDS_GLOB = "trials*.jsonl"
PROMPTS_FILE = "prompts.jsonl"
LOCK_FILE = "run.lock"
ATTENTION_DIR = "attention"
REPORT_DIR = "report"
EXPORT_DIR = "export"
VIEWER_FILE = "viewer.html"


def records_name(rank: int | None = None) -> str:
    """The records file of one process: ``trials.jsonl`` alone (None), ``trials.<rank>.jsonl`` among several."""
    return RECORDS_FILE if rank is None else f"trials.{rank}.jsonl"


def lock_name(rank: int | None = None) -> str:
    """The lock file of one process (see ``records_name``)."""
    return LOCK_FILE if rank is None else f"run.{rank}.lock"


def prompts_name(rank: int | None = None) -> str:
    """The saved-prompts file of one process (see ``records_name``)."""
    return PROMPTS_FILE if rank is None else f"prompts.{rank}.jsonl"


def run_output(run_dir: str | Path, name: str) -> Path:
    """``RUN_DIR/<name>``, where ``report`` and ``view`` write by default (``REPORT_DIR``, ``VIEWER_FILE``); a
    RunDirError when it is a link that leads out of the run directory (it would write over someone else's files)."""
    path = Path(run_dir) / name
    root, target = Path(run_dir).resolve(), path.resolve()
    if root not in target.parents:
        raise RunDirError(f"{path}: is a symbolic link to {target}, outside the run directory; evalkit does not write "
                          "through it: remove the link, or give --out DIR for another place")
    return path


def records_files(run_dir: str | Path) -> list[Path]:
    """The records files of a run directory in read order: ``trials.jsonl``, then by rank, then the rest."""
    return sorted(Path(run_dir).glob(RECORDS_GLOB), key=_read_order)


def _read_order(path: Path) -> tuple[int, int, str]:
    if path.name == RECORDS_FILE:
        return (0, 0, "")
    match = re.fullmatch(r"trials\.(\d+)\.jsonl", path.name)
    return (1, int(match.group(1)), "") if match else (2, 0, path.name)


# --- file-system errors -------------------------------------------------------------------------


# what a failed write of a run advises (the report and the viewer, which write elsewhere, say REPORT_ADVICE)
RUN_ADVICE = ("make the place writable (or free space) and rerun the same command to resume, "
              "or choose another --output-dir")
REPORT_ADVICE = "make the place writable (or free space) and run the same command again, or choose another --out"


@contextlib.contextmanager
def disk_errors(path: str | Path, action: str, advice: str = RUN_ADVICE) -> Iterator[None]:
    """Turn an OSError (read-only, full disk, a file where a folder belongs, ...) into a one-line RunDirError
    ending in ``advice`` (what to do next, which depends on the command that wrote).

    What was written before stays: records are appended one at a time and other files replaced atomically.
    """
    try:
        yield
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise RunDirError(f"{path}: cannot {action} ({reason}); {advice}") from None


def write_atomic(path: Path, data: str | bytes, action: str = "write") -> None:
    """Replace ``path`` by ``data`` (temporary file, fsync, rename): a kill leaves the old or the new file, and a
    failed write (full disk, read-only place) leaves the old file and no temporary one."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with disk_errors(path, action):
        try:
            with open(tmp, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())  # the data is on disk before the rename makes it the file
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise


def append_line(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON object as one line and force it to disk before returning."""
    line = json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n"
    with disk_errors(path, "append a line"):
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


# --- header -------------------------------------------------------------------------------------


def write_header(run_dir: str | Path, header: dict[str, Any]) -> None:
    """Write ``RUN_DIR/header.json`` (``schema_version`` added unless the header already has one)."""
    text = json.dumps({"schema_version": SCHEMA_VERSION, **header}, indent=2, sort_keys=True) + "\n"
    write_atomic(Path(run_dir) / HEADER_FILE, text)


def read_header(run_dir: str | Path) -> dict[str, Any]:
    """The parsed ``RUN_DIR/header.json``; RunDirError when missing, unreadable or not a JSON object."""
    path = Path(run_dir) / HEADER_FILE
    if not path.is_file():
        raise RunDirError(
            f"{run_dir}: no {HEADER_FILE}; is this an evalkit run directory? run `evalkit run CONFIG` first"
        )
    try:
        header = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunDirError(f"{path}: unreadable header ({err}); rerun into a new --output-dir") from None
    if not isinstance(header, dict):
        raise RunDirError(
            f"{path}: expected a JSON object, found {type(header).__name__}; rerun into a new --output-dir"
        )
    return header


def header_schema(header: dict[str, Any]) -> int:
    """The header's schema version (1 for a header written before versions existed)."""
    version = header.get("schema_version", 1)
    return version if isinstance(version, int) and not isinstance(version, bool) else 1


# --- record lines -------------------------------------------------------------------------------

# JSON types a field may hold, from its annotation (strings: ``from __future__ import annotations``)
_JSON_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


def _accepted(annotation: str) -> tuple[tuple[type, ...], bool, str]:
    """(JSON types, null allowed, type name) of a TrialRecord annotation like ``"float | None"`` or ``"dict[...]"``."""
    parts = [p.strip() for p in annotation.split("|")]
    base = next(p for p in parts if p != "None")
    if base.startswith("dict"):
        return (dict,), "None" in parts, "dict"
    if base.startswith("list"):
        return (list,), "None" in parts, "list"
    return _JSON_TYPES[base], "None" in parts, base


FIELD_TYPES: dict[str, tuple[tuple[type, ...], bool, str]] = {
    f.name: _accepted(str(f.type)) for f in dataclasses.fields(TrialRecord)
}
_REQUIRED = tuple(
    f.name for f in dataclasses.fields(TrialRecord)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
)
# schema 1 kept these in ``extra``: (extra key, record field)
_V1_EXTRA_FIELDS = (("control", "control"), ("gold_index", "gold_document_index"), ("documents", "documents_total"))
_LAYOUT_FIELDS = ("question_position", "instruction_position", "chat_template", "system_prompt",
                  "context_markers", "answer_prefix")


def record_row(record: TrialRecord) -> dict[str, Any]:
    """The JSON object of one record line (``append_line`` writes it)."""
    return dataclasses.asdict(record)


def upgrade_v1(row: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 record (axes in ``extra``) as schema 2: ``extra["control"]``, ``extra["layout_axes"]``,
    ``extra["gold_index"]`` and ``extra["documents"]`` become fields; the layout label is dropped (reports
    derive it from the axes and the header's config)."""
    extra = row.get("extra")
    if not isinstance(extra, dict):
        return {**row, "schema_version": SCHEMA_VERSION}
    extra = dict(extra)
    fields: dict[str, Any] = {}
    for key, name in _V1_EXTRA_FIELDS:
        if key in extra:
            fields[name] = extra.pop(key)
    extra.pop("layout", None)
    axes = extra.pop("layout_axes", None)
    if isinstance(axes, dict):
        fields.update({name: axes[name] for name in _LAYOUT_FIELDS if name in axes})
    return {**row, **fields, "extra": extra, "schema_version": SCHEMA_VERSION}


def parse_record(row: object) -> TrialRecord:
    """One parsed record line as a TrialRecord, upgraded from schema 1; ValueError saying what is wrong."""
    if not isinstance(row, dict):
        raise ValueError(f"not a trial record (a JSON {type(row).__name__}, not an object)")
    version = row.get("schema_version", 1)
    if version == 1 and not isinstance(version, bool):
        row = upgrade_v1(row)
    elif version != SCHEMA_VERSION or isinstance(version, bool):
        raise ValueError(f"schema_version {version!r} is not one this evalkit reads (1, {SCHEMA_VERSION}); "
                         "upgrade evalkit")
    missing = [name for name in _REQUIRED if name not in row]
    if missing:
        raise ValueError(f"record lacks {', '.join(missing)}; was it written by another evalkit version?")
    values = {name: row[name] for name in FIELD_TYPES if name in row}
    for name, value in values.items():
        types, nullable, type_name = FIELD_TYPES[name]
        if value is None and nullable:
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = type_name + (" or null" if nullable else "")
            raise ValueError(f"record field {name}: {value!r} is not a {expected}")
    return TrialRecord(**values)


@dataclass(frozen=True)
class RecordsRead:
    """The records of one records file, and the torn last line left out (if any)."""

    records: tuple[tuple[int, TrialRecord], ...]  # (1-based line number, record)
    torn: str = ""  # "path:line: torn last line (partial write)", or ""


def parse_line(raw: bytes) -> TrialRecord:
    """One line of a records file (bytes, without its newline) as a TrialRecord; ValueError if invalid."""
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not a trial record (not UTF-8 text)") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"not a trial record (not JSON: {err.msg})") from None
    return parse_record(row)


def read_records(path: str | Path) -> RecordsRead:
    """Every record of a records file, parsed, checked and upgraded to this schema.

    A last line without its newline is a write killed half-way: it is left out with a logged warning (resume
    cuts it off and reruns that trial). Any other line that is not a valid record (corrupted, a field of the
    wrong type) is a RunDirError naming file and line. The store (resume) and the reports (``load_results``)
    both read through here, so they agree on what a run directory holds.
    """
    path = Path(path)
    with disk_errors(path, "read"):
        data = path.read_bytes()
    lines = data.split(b"\n")
    records, torn = [], ""
    for index, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            records.append((index + 1, parse_line(raw)))
        except ValueError as err:
            if index == len(lines) - 1:  # no newline after it
                torn = f"{path}:{index + 1}: torn last line (partial write)"
                log.warning("%s skipped", torn)
                continue
            raise RunDirError(
                f"{path}:{index + 1}: {err}; delete or repair that line (its trial runs again on resume)"
            ) from None
    return RecordsRead(tuple(records), torn)


# --- attention arrays ---------------------------------------------------------------------------
# One ``attention/<trial_id>.npz`` per captured trial, written atomically before the trial's record is
# appended, so a record always has its array; a run killed in between leaves an array without a record,
# which the resumed run overwrites when it redoes the trial, and which loaders ignore (they start from
# the records). Arrays of one file (``np.load(path)``, no pickle)::
#
#     mass            float32 [layers, heads, rows, regions]   attention mass of each row on each region
#     remainder       float32 [layers, heads, rows]            1 - sum over the partition regions
#     argmax_position int32   [layers, heads, rows]            key position of the row's largest weight (-1: none)
#     argmax_token    int32   [layers, heads, rows]            token id at that position (-1: none)
#     row_token       int32   [rows]                           token the row predicts (generated[row]; -1: none)
#     row_in_needle   bool    [rows]                           row_token occurs among the needle's tokens
#     region_names    str     [regions]                        see evalkit/attention/regions.py
#     spans           int32   [regions, 2]                     [start, end) token positions of each region
#     bins, prompt_tokens int
#     documents, distractors int   how many regions after the bins are documents (doc_00 ...), then placed
#                                  look-alikes (distractor_00 ...); 0 when none (and in files from before them)
#     token_mass      float16 [stored layers, rows, prompt_tokens]  only with ``attention.tokens: true``: each row's
#                     mass on every prompt token, mean over heads (summed over a region's tokens: that region's
#                     ``mass`` averaged over heads, up to float16 rounding)
#     token_layers    int32   [stored layers]                  the layers of ``token_mass``
#
# Rows: 0 is the last prompt token (the step that produces the first answer token), row k >= 1 the decode
# step that feeds generated token k - 1. A row the trial never reached (generation stopped first) is NaN / -1.

TRIAL_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")  # ids that are plain file names get an array


def attention_path(run_dir: str | Path, trial_id: str) -> Path:
    """``RUN_DIR/attention/<trial_id>.npz`` (refuses ids that are not plain file names)."""
    if not TRIAL_ID_PATTERN.fullmatch(trial_id):
        raise ValueError(f"trial id {trial_id!r} is not a plain file name")
    return Path(run_dir) / ATTENTION_DIR / f"{trial_id}.npz"


def save_trial_attention(run_dir: str | Path, trial_id: str, attention: TrialAttention) -> Path:
    """Write one trial's arrays atomically (replacing an earlier file of the same trial); return the path."""
    path = attention_path(run_dir, trial_id)
    buffer = io.BytesIO()
    tokens = {} if attention.token_mass is None else {  # attention.tokens: per-token mass of the stored layers
        "token_mass": attention.token_mass.astype(np.float16),
        "token_layers": np.array(attention.token_layers, dtype=np.int32)}
    np.savez_compressed(
        buffer, mass=attention.mass.astype(np.float32), remainder=attention.remainder.astype(np.float32),
        argmax_position=attention.argmax_position.astype(np.int32),
        argmax_token=attention.argmax_token.astype(np.int32), row_token=attention.row_token.astype(np.int32),
        row_in_needle=attention.row_in_needle.astype(bool), region_names=np.array(attention.region_names),
        spans=attention.spans.astype(np.int32), bins=np.int64(attention.bins),
        prompt_tokens=np.int64(attention.prompt_tokens), documents=np.int64(attention.documents),
        distractors=np.int64(attention.distractors), **tokens,
    )  # fmt: skip
    with disk_errors(path, "write an attention array"):
        path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buffer.getvalue(), "write an attention array")
    return path


def read_trial_attention(path: str | Path) -> TrialAttention:
    """Read one ``.npz`` written by ``save_trial_attention``; RunDirError if it is unreadable."""
    fix = "rerun that trial (delete its record)"
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as err:
        raise RunDirError(f"{path}: unreadable attention array ({err.strerror or err}); {fix}") from None
    if magic != b"PK\x03\x04":  # np.load would guess a pickle and advise allow_pickle=True: never for a run file
        raise RunDirError(f"{path}: not an evalkit attention array (not an .npz archive: the file is corrupt or was "
                          f"replaced); {fix}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return TrialAttention(
                mass=data["mass"], remainder=data["remainder"], argmax_position=data["argmax_position"],
                argmax_token=data["argmax_token"], row_token=data["row_token"], row_in_needle=data["row_in_needle"],
                region_names=tuple(str(n) for n in data["region_names"]), spans=data["spans"],
                bins=int(data["bins"]), prompt_tokens=int(data["prompt_tokens"]),
                token_mass=data["token_mass"] if "token_mass" in data.files else None,
                token_layers=tuple(int(x) for x in data["token_layers"]) if "token_layers" in data.files else (),
                documents=int(data["documents"]) if "documents" in data.files else 0,
                distractors=int(data["distractors"]) if "distractors" in data.files else 0,
            )  # fmt: skip
    except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        # numpy's own words for an object array advise loading it unsafely; evalkit never writes one
        reason = "an entry holds Python objects" if "allow_pickle" in str(err) else str(err)
        raise RunDirError(f"{path}: corrupt evalkit attention array ({reason}); {fix}") from None
