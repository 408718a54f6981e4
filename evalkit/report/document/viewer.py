"""The trial viewer: one self-contained HTML page listing every trial of some run directories.

A filterable table (model, task, length, depth, layout, correctness, and the failure type where records carry
one; an untrained control's model is named so and its right/wrong greyed, as chance); a click opens the trial:
its prompt with regions coloured, the needle highlighted and planted look-alikes outlined (folded, see
``viewer_data.py``) or, with saved token texts and per-token attention, as tokens coloured by attention mass
(``viewer_tokens.py``); the gold and model answers, the failure type, the gold log-prob and, where attention was
captured, its strips and top heads. The page loads nothing: its one script is inline and allowed by its SHA-256
in the Content-Security-Policy, which forbids every other script and every network load; record text travels as
JSON (``<`` escaped) and is put on the page as text only.
Written by ``evalkit view RUN_DIR`` and, as ``viewer.html``, beside every report.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalkit.report.data.labels import add_variants
from evalkit.report.data.load import load_header, load_results
from evalkit.report.data.untrained import UNTRAINED_NOTE, untrained_models
from evalkit.report.document.viewer_assets import viewer_css, viewer_script
from evalkit.report.analysis.failure_mix import FAILURE_WORDS
from evalkit.report.document.viewer_data import FOLD_CHARS, MAX_PROMPT_TRIALS, trial_payloads
from evalkit.report.document.viewer_distractors import FAILURE_FILTER
from evalkit.report.document.viewer_tokens import FOLD_TOKENS, MAX_TOKEN_TRIALS
from evalkit.store.format import REPORT_ADVICE, disk_errors

TITLE = "evalkit trial viewer"
FILTER_LABELS = (("model", "model"), ("task", "task"), ("length", "context length"), ("depth", "depth"),
                 ("layout", "layout / control"), ("correct", "correct"))
SOURCES = {
    "saved": "the run's saved prompt (prompts.jsonl), long regions folded",
    "records": "the record (needle and question as text; preamble and haystack as token counts)",
    "needle_only": "the record's needle only (past the embedding limit)",
}


def script_hash(script: str) -> str:
    """``'sha256-...'`` of an inline script, as a Content-Security-Policy source."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii") + "'"


def viewer_csp(script: str) -> str:
    """The viewer's policy: only its own inline ``script``, inline styles, no network, no forms."""
    return (f"default-src 'none'; script-src {script_hash(script)}; style-src 'unsafe-inline'; img-src data:; "
            "base-uri 'none'; form-action 'none'")


def json_for_script(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: every ``<``, ``>`` and ``&`` as a \\u escape."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def embedding_note(counts: dict[str, int], total: int, fold_chars: int, max_prompt_trials: int,
                   fold_tokens: int = FOLD_TOKENS) -> str:
    """Which trials are embedded and how (shown on the page, and returned to the CLI)."""
    parts = [f"{total:,} trials embedded."]
    if counts["saved"]:
        parts.append(f"{counts['saved']:,} with the saved prompt text, each region longer than {2 * fold_chars:,} "
                     f"characters folded to its first and last {fold_chars:,};")
    if counts["records"]:
        parts.append(f"{counts['records']:,} rebuilt from the record (needle and question as text, preamble and "
                     "haystack as token counts: run with save_prompts: true to keep the text);")
    if counts["needle_only"]:
        parts.append(f"{counts['needle_only']:,} with the needle only (past the first {max_prompt_trials:,}).")
    parts.append(f"attention captured for {counts['attention']:,}.")
    if counts.get("tokens"):
        parts.append(f"Prompt tokens coloured by attention for {counts['tokens']:,} (the first {MAX_TOKEN_TRIALS:,} "
                     f"at most), each region longer than {2 * fold_tokens:,} tokens folded to its first and last "
                     f"{fold_tokens:,}.")
    return " ".join(parts)


def viewer_filters(trials: list[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    """The filters of the page: ``FILTER_LABELS``, and the failure type when any trial has one."""
    return FILTER_LABELS + ((FAILURE_FILTER,) if any(t.get("failure") for t in trials) else ())


def viewer_html(trials: list[dict[str, Any]], note: str, runs: Sequence[str]) -> str:
    """The whole page for ``trials`` (payloads of ``trial_payloads``)."""
    shown = viewer_filters(trials)
    filters = "".join(f'<label>{html.escape(label)}<select id="filter-{name}"><option value="">all</option>'
                      "</select></label>" for name, label in shown)
    columns = ("model", "task", "length", "depth", "layout", "ok", *(("why",) if FAILURE_FILTER in shown else ()),
               "answer")
    headers = "".join(f"<th>{h}</th>" for h in columns)
    data = {"trials": trials, "sources": SOURCES, "filters": [name for name, _ in shown],
            "untrained_note": UNTRAINED_NOTE}
    if FAILURE_FILTER in shown:
        data["failure_words"] = {name: f"{short}: {meaning}" for name, (short, meaning) in FAILURE_WORDS.items()}
    payload = json_for_script(data)
    script = viewer_script()
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{viewer_csp(script)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{TITLE}</title>",
        f"<style>{viewer_css()}</style>",
        "</head><body>",
        f"<h1>{TITLE}</h1>",
        f'<p class="note" id="embedding-note">{html.escape(note)} Runs: {html.escape(", ".join(runs))}.</p>',
        '<main><section><div class="filters">' + filters + '</div><div id="shown" class="muted"></div>',
        f'<div class="list"><table id="trials"><thead><tr>{headers}</tr></thead><tbody></tbody></table></div>',
        '</section><section id="detail"><p class="muted">Click a trial to open it.</p></section></main>',
        f'<script type="application/json" id="trial-data">{payload}</script>',
        f"<script>{script}</script>",
        "</body></html>",
        "",
    ])


def write_viewer(run_dirs: Sequence[str | Path] | str | Path, out: str | Path, *, fold_chars: int = FOLD_CHARS,
                 max_prompt_trials: int = MAX_PROMPT_TRIALS, fold_tokens: int = FOLD_TOKENS) -> Path:
    """Write the viewer of ``run_dirs`` to ``out`` (one HTML file); return its path."""
    dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    records = add_variants(load_results(dirs))
    untrained = untrained_models(load_header(d) for d in dirs)
    trials, counts = trial_payloads(records, fold_chars, max_prompt_trials, fold_tokens, untrained)
    note = embedding_note(counts, len(trials), fold_chars, max_prompt_trials, fold_tokens)
    path = Path(out)
    text = viewer_html(trials, note, [str(d) for d in dirs])
    with disk_errors(path, "write the viewer", REPORT_ADVICE):  # read-only place, full disk: one line, as report
        path.write_text(text, encoding="utf-8")
    return path
