"""What the trial viewer shows of each trial, as plain JSON-ready dicts (``viewer.py`` embeds them).

Per trial: the record's axes and texts, the prompt as coloured pieces, and a summary of its captured attention.

Prompt text comes from ``prompts.jsonl`` when the run had ``save_prompts: true``: the saved text is cut at the
record's needle and question (found by string search; without a match the text is one piece), and each piece
longer than ``2 * fold_chars`` is folded to its first and last ``fold_chars`` characters, so a 128k-token prompt
costs a few kB. Without saved prompts the pieces are rebuilt from the record: the needle and the question as
text, the preamble and haystack as token counts only. Trials past ``max_prompt_trials`` keep only the needle.

Attention (trials with an ``attention/<trial_id>.npz``): row 0 (the step that produced the first answer token)
averaged over layers and heads per region (the sink apart) and per bin, the bins per layer (averaged over
heads), and the five heads with the most mass on the needle, with their copy events over all captured rows.
With ``attention.tokens: true`` also the per-token mass of row 0 (mean over the stored layers), summed into at
most ``TOKEN_CELLS`` equal cells, and, where the run also saved the token texts, the folded prompt as tokens
coloured by that mass (``viewer_tokens.py``; ``token_note`` says why a trial has no such view).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evalkit.report.data.labels import control_labels, layout_labels
from evalkit.report.document.viewer_distractors import cut_text, failure_fields, split_counts
from evalkit.report.document.viewer_tokens import FOLD_TOKENS, MAX_TOKEN_TRIALS, token_note, token_view
from evalkit.store.attention_arrays import attention_for_records, copy_events
from evalkit.store.saved_prompts import read_saved_prompts
from evalkit.types import TrialAttention

FOLD_CHARS = 400  # characters kept at each end of a long prompt region
MAX_PROMPT_TRIALS = 2000  # trials whose prompt pieces are embedded (a page of about 2000 x 3 kB at most)
TEXT_LIMIT = 4000  # characters of a needle, question, answer shown before a cut
TOP_HEADS = 5
TOKEN_CELLS = 400


def _clip(text: Any, limit: int = TEXT_LIMIT) -> str:
    text = "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text)
    return text if len(text) <= limit else text[:limit] + f" … [{len(text) - limit:,} more characters]"


def fold(text: str, fold_chars: int = FOLD_CHARS) -> tuple[str, str, int]:
    """``(head, tail, folded)``: the first and last ``fold_chars`` characters and how many were left out
    (``tail`` empty and ``folded == 0`` when the text is short enough to show whole)."""
    if len(text) <= 2 * fold_chars:
        return text, "", 0
    return text[:fold_chars], text[-fold_chars:], len(text) - 2 * fold_chars


def saved_prompts(run_dir: str | Path) -> dict[str, str]:
    """``trial_id -> prompt text`` from the run's saved prompts ({} when prompts were not saved)."""
    return {trial_id: str(row.get("text", "")) for trial_id, row in read_saved_prompts(run_dir).items()}


def saved_token_texts(run_dir: str | Path) -> dict[str, list[str]]:
    """``trial_id -> one text per prompt token`` for the saved prompts that hold them."""
    return {trial_id: row["token_texts"] for trial_id, row in read_saved_prompts(run_dir).items()
            if "token_texts" in row}


def _piece(region: str, text: str | None, fold_chars: int, tokens: int | None = None,
           distractor: int | None = None) -> dict[str, Any]:
    if text is None:
        return {"region": region, "text": None, "tokens": tokens}
    keep = TEXT_LIMIT if region in ("needle", "question", "distractor") else fold_chars
    head, tail, folded = fold(text, keep)
    piece = {"region": region, "text": head, "tail": tail, "folded": folded}
    return piece if distractor is None else {**piece, "distractor": distractor}


def pieces_from_text(text: str, needle: str, question: str, fold_chars: int = FOLD_CHARS,
                     marks: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The saved prompt cut at the needle and the (last) question: before, needle, after, question, tail; the
    haystack before and after the needle also cut at each planted distractor's text (``marks``)."""
    at = text.find(needle) if needle else -1
    if at < 0:
        return [_piece("prompt", text, fold_chars)]
    end = at + len(needle)
    asked = text.rfind(question, end) if question else -1
    cuts = [("before", text[:at]), ("needle", needle)]  # "before" holds the preamble and the haystack before
    if asked < 0:
        cuts.append(("after", text[end:]))
    else:
        cuts += [("after", text[end:asked]), ("question", question), ("tail", text[asked + len(question):])]
    pieces = []
    for name, part in cuts:
        parts = cut_text(name, part, marks) if marks and name in ("before", "after") else [(name, part, None)]
        pieces += [_piece(region, piece, fold_chars, distractor=index) for region, piece, index in parts if piece]
    return pieces


def pieces_from_record(row: Any, marks: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Pieces rebuilt from the record: token counts for preamble and haystack, the needle and question as text;
    the haystack counts split at the planted distractors (``marks``), each shown by its text."""
    regions = row.regions if isinstance(row.regions, dict) else {}

    def count(name: str) -> int | None:
        span = regions.get(name)
        return int(span[1]) - int(span[0]) if isinstance(span, (list, tuple)) and len(span) == 2 else None

    def haystack(name: str) -> list[dict[str, Any]]:
        parts = split_counts(name, regions.get(name), marks) if marks else []
        if not parts:
            return [_piece(name, None, 0, count(name))]
        return [_piece(region, None, 0, part) if index is None else _piece(region, str(part), 0, distractor=index)
                for region, part, index in parts]

    return [_piece("preamble", None, 0, count("preamble")), *haystack("context_before"),
            _piece("needle", _clip(row.needle), FOLD_CHARS), *haystack("context_after"),
            _piece("question", _clip(row.question), FOLD_CHARS)]


def _int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _round(values: np.ndarray, digits: int = 4) -> list:
    """Floats for JSON: rounded, NaN -> None."""
    return [None if not np.isfinite(v) else round(float(v), digits) for v in np.asarray(values, dtype=float).ravel()]


def _cells(mass: np.ndarray, cells: int = TOKEN_CELLS) -> list:
    """Sum a per-token vector into at most ``cells`` equal cells (positions in order)."""
    if mass.size <= cells:
        return _round(mass, 5)
    edges = np.linspace(0, mass.size, cells + 1).round().astype(int)
    return _round(np.add.reduceat(np.nan_to_num(mass.astype(np.float64)), edges[:-1]), 5)


def attention_summary(att: TrialAttention) -> dict[str, Any]:
    """Row 0 of one trial's arrays: region and bin masses (mean over layers, heads), bins per layer, top heads."""
    row = att.mass[:, :, 0, :]  # [layers, heads, regions]
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(row, axis=(0, 1)) if np.isfinite(row).any() else np.full(row.shape[-1], np.nan)
        per_layer = np.nanmean(row[:, :, att.bin_slice], axis=1)  # [layers, bins]
    names = att.region_names
    partition = {n: v for n, v in zip(names[: att.partition_size], _round(mean[: att.partition_size]))}
    needle = att.region("needle")[:, :, 0]  # [layers, heads]
    copies = copy_events(att).sum(axis=2)  # [layers, heads]: copy events over the captured rows
    flat = np.nan_to_num(needle, nan=-1.0).ravel()
    top = [divmod(int(i), needle.shape[1]) for i in np.argsort(-flat, kind="stable")[:TOP_HEADS]]
    summary = {
        "layers": int(att.mass.shape[0]), "heads": int(att.mass.shape[1]), "rows": int(att.mass.shape[2]),
        "sink": partition.pop("sink", None), "regions": partition,
        "bins": _round(mean[att.bin_slice]), "bins_by_layer": [_round(r) for r in per_layer],
        "top_heads": [{"layer": la, "head": h, "needle_mass": _round(needle[la, h])[0], "copies": int(copies[la, h])}
                      for la, h in top],
        "spans": [[int(a), int(b)] for a, b in att.spans[att.bin_slice]],
    }
    tokens = getattr(att, "token_mass", None)
    if tokens is not None and tokens.size:
        vector = np.nanmean(tokens[:, 0, :].astype(np.float32), axis=0)  # [prompt_tokens], row 0
        summary["tokens"] = {"cells": _cells(vector), "positions": int(vector.size),
                             "layers": [int(x) for x in getattr(att, "token_layers", ())]}
    return summary


def trial_payloads(records: pd.DataFrame, fold_chars: int = FOLD_CHARS, max_prompt_trials: int = MAX_PROMPT_TRIALS,
                   fold_tokens: int = FOLD_TOKENS, untrained: frozenset[str] = frozenset(),
                   ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """One dict per record row (records with ``variant``), and counts of how each trial's prompt is shown
    (``tokens``: trials whose prompt tokens are coloured by attention, see ``viewer_tokens.py``). Trials of the
    ``untrained`` models (random-weight controls) carry ``untrained: true``, so the page does not read their
    right and wrong as retrieval."""
    prompts: dict[tuple[str, str], str] = {}
    token_texts: dict[tuple[str, str], list[str]] = {}
    for run_dir in dict.fromkeys(records["run_dir"].astype("str")):
        prompts.update({(run_dir, k): v for k, v in saved_prompts(run_dir).items()})
        token_texts.update({(run_dir, k): v for k, v in saved_token_texts(run_dir).items()})
    arrays = attention_for_records(records)
    layouts, controls = layout_labels(records).tolist(), control_labels(records).tolist()
    counts = {"saved": 0, "records": 0, "needle_only": 0, "attention": 0, "tokens": 0}
    out = []
    for i, row in enumerate(records.itertuples(index=False)):
        text = prompts.get((str(row.run_dir), str(row.trial_id)))
        why = failure_fields(row)  # failure type and look-alikes ({} for records from before them)
        marks = why.get("distractors")
        if i >= max_prompt_trials:
            source, pieces = "needle_only", [_piece("needle", _clip(row.needle), fold_chars)]
        elif text is not None:
            source, pieces = "saved", pieces_from_text(text, str(row.needle or ""), str(row.question or ""), fold_chars,
                                                      marks)
        else:
            source, pieces = "records", pieces_from_record(row, marks)
        counts[source] += 1
        item = {
            "id": str(row.trial_id), "model": str(row.model), "variant": str(row.variant), "task": str(row.task),
            "length": _int(row.context_length), "depth": _round([row.depth], 6)[0], "layout": layouts[i],
            "control": controls[i], "status": str(row.status),
            "correct": bool(row.correct) if row.status == "ok" and not pd.isna(row.correct) else None,
            "gold": _clip(row.gold_answer), "answer": _clip(row.generated),
            "question": _clip(row.question), "logprob_sum": _round([row.gold_logprob_sum])[0],
            "logprob_mean": _round([row.gold_logprob_mean])[0], "prompt_tokens": _int(row.prompt_tokens),
            "source": source, "pieces": pieces, "untrained": str(row.model) in untrained, **why,
        }
        if arrays[i] is not None:
            item["attention"] = attention_summary(arrays[i])
            counts["attention"] += 1
        texts = token_texts.get((str(row.run_dir), str(row.trial_id)))
        note = token_note(arrays[i], texts, counts["tokens"] < MAX_TOKEN_TRIALS)
        if note is None:
            item["token_view"] = token_view(arrays[i], texts, fold_tokens)
            counts["tokens"] += 1
        else:
            item["token_note"] = note
        out.append(item)
    return out, counts
