"""The saved-prompts files of a run (``prompts*.jsonl``, written with ``save_prompts: true``), read back."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from evalkit.store.format import disk_errors

log = logging.getLogger(__name__)


def read_saved_prompts(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``trial_id -> {"input_ids", "regions", "text"[, "token_texts"]}`` from every prompts file of a run
    (``save_prompts: true``). ``token_texts`` (one string per id, joined they are ``text``) is optional: older
    runs did not save it, and one that is not a list of strings, one per id, is dropped with a warning.

    Lines that are not JSON objects with a ``trial_id`` (a torn last line of a killed run) are left out.
    """
    saved: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(run_dir).glob("prompts*.jsonl")):
        with disk_errors(path, "read"):
            lines = path.read_bytes().splitlines()
        for raw in lines:
            try:
                row = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(row, dict) and isinstance(row.get("trial_id"), str):
                saved[row["trial_id"]] = _checked_token_texts(path, row)
    return saved


def _checked_token_texts(path: Path, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` without a ``token_texts`` that does not hold one string per input id (a hand-edited file)."""
    texts, ids = row.get("token_texts"), row.get("input_ids")
    if texts is None or (isinstance(texts, list) and isinstance(ids, list) and len(texts) == len(ids)
                         and all(isinstance(t, str) for t in texts)):
        return row
    log.warning("%s: trial %s: token_texts is not one string per input id; its tokens are shown uncoloured",
                path, row["trial_id"])
    return {k: v for k, v in row.items() if k != "token_texts"}
