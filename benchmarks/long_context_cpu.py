"""Long prompts on a CPU: seconds per trial, peak memory, and every captured region mass rechecked.

Runs a config (default ``configs/long_context_cpu.yaml``: gemma3-270m, passkey, 16k and 32k tokens, three
depths, attention captured) once per context length with ``evalkit run`` in a child process, into
``OUTPUT/len_<length>``: the record's ``elapsed_s`` is each trial's time, ``os.wait4`` gives the child's peak
RSS. Then it loads each run's model once more and recomputes the last prompt row's attention of every trial with
``benchmarks/attention_recheck.py`` (no code shared with ``evalkit/attention/``), from the prompt the run saved
(``save_prompts: true``), and compares it with every region mass the run stored (row 0 of the trial's array).
Prints a Markdown table and a last line: the largest difference over all trials and whether it is within 1e-4;
exits 1 when it is not (or when no trial could be checked).

Examples:
    python benchmarks/long_context_cpu.py                                   # 16k and 32k: hours on a 2-core CPU
    python benchmarks/long_context_cpu.py --lengths 1024 --output-dir /tmp/long-smoke   # a smoke run, seconds
    python benchmarks/long_context_cpu.py --recheck-only reports/runs/long_context_cpu # recheck, no rerun
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from attention_recheck import largest_mass_difference, last_row_probabilities  # noqa: E402

TOLERANCE = 1e-4
DEFAULT_CONFIG = ROOT / "configs" / "long_context_cpu.yaml"
MEASUREMENTS_FILE = "measurements.json"  # beside the per-length run directories: wall time and peak RSS
GIB = 1024**3


@dataclass(frozen=True)
class LengthRun:
    """One ``evalkit run`` child process: one context length, its run directory, wall time and peak RSS."""

    length: int
    run_dir: str  # the folder's name inside the output folder (``len_16384``)
    wall_s: float  # the whole child: model load and every trial
    peak_rss_bytes: int


@dataclass(frozen=True)
class TrialCheck:
    """One trial's timing and answer from its record, and how far the recomputed masses are from the stored."""

    run_dir: str
    trial_id: str
    context_length: int
    prompt_tokens: int
    depth: float
    status: str  # "ok" or "skipped" (a skipped trial has no attention to check)
    correct: bool
    elapsed_s: float
    difference: float | None  # max |recomputed - stored| over layers, heads and regions; None: not checked


def run_length(config: Path, length: int, run_dir: Path) -> LengthRun:
    """Run ``config`` at one context length into ``run_dir`` (resuming it) in a child process; time and peak RSS."""
    command = [sys.executable, "-m", "evalkit", "run", str(config), "--set", f"context_lengths=[{length}]",
               "--output-dir", str(run_dir), "--no-report", "--quiet"]  # fmt: skip
    # the child imports this checkout's evalkit, whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage (RUSAGE_CHILDREN would be cumulative)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"evalkit run exited with {process.returncode} at length {length}: {' '.join(command)}")
    return LengthRun(length, run_dir.name, time.perf_counter() - started, usage.ru_maxrss * 1024)  # KiB on Linux


def run_lengths(config: Path, lengths: list[int], out_dir: Path) -> list[LengthRun]:
    """Every length in its own run directory ``out_dir/len_<length>``; the measurements are saved beside them."""
    runs = [run_length(config, length, out_dir / f"len_{length}") for length in lengths]
    saved = read_measurements(out_dir)
    saved.update({run.run_dir: run for run in runs})
    (out_dir / MEASUREMENTS_FILE).write_text(json.dumps([asdict(r) for r in saved.values()], indent=2) + "\n")
    return runs


def read_measurements(folder: Path) -> dict[str, LengthRun]:
    """Run directory name -> ``LengthRun`` from ``folder/measurements.json`` (empty when there is none)."""
    path = folder / MEASUREMENTS_FILE
    if not path.is_file():
        return {}
    return {row["run_dir"]: LengthRun(**row) for row in json.loads(path.read_text())}


def run_dirs_of(path: Path) -> list[Path]:
    """``path`` itself when it is a run directory, else the run directories inside it (``len_*`` and others)."""
    from evalkit.store.format import HEADER_FILE

    if (path / HEADER_FILE).is_file():
        return [path]
    inside = path.iterdir() if path.is_dir() else ()
    found = sorted((p for p in inside if (p / HEADER_FILE).is_file()), key=_length_order)
    if not found:
        raise SystemExit(f"{path}: no run directory (no {HEADER_FILE} in it or in its folders); give a run directory "
                         "or the output folder of this script")
    return found


def _length_order(path: Path) -> tuple[int, int, str]:
    """``len_<n>`` folders by length, any other run directory after them by name."""
    digits = path.name.removeprefix("len_")
    return (0, int(digits), path.name) if digits.isdigit() else (1, 0, path.name)


def load_run_model(header: dict[str, Any], name: str, cache: dict[str, Any]) -> Any:
    """The model ``name`` of a run, loaded as its header's config entry says (once per name, kept in ``cache``)."""
    from evalkit.config.schema import ModelConfig
    from evalkit.models import load_model

    if name not in cache:
        entries = [m for m in header["config"]["models"] if m.get("name") == name]
        if not entries:
            raise SystemExit(f"header.json: config.models has no entry named {name!r}")
        cache[name] = load_model(ModelConfig.model_validate(entries[0])).model
    return cache[name]


def recheck_run(run_dir: Path, *, chunk_tokens: int = 2048, models: dict[str, Any] | None = None) -> list[TrialCheck]:
    """Each trial of a finished run with its stored masses compared to the independent recomputation.

    Reads the run through evalkit's readers (header, records, attention arrays, saved prompts); a trial without
    an array or a saved prompt, or whose saved prompt is not the one its record hashed, is refused by name.
    """
    from evalkit.report.data.load import load_header, load_results
    from evalkit.store.attention_arrays import attention_for_records
    from evalkit.store.saved_prompts import read_saved_prompts

    header, records = load_header(run_dir), load_results(run_dir)
    arrays, prompts = attention_for_records(records), read_saved_prompts(run_dir)
    models = {} if models is None else models
    checks = []
    for record, attention in zip(records.to_dict("records"), arrays):
        difference = None
        if record["status"] == "ok":
            ids = _prompt_ids(run_dir, record, attention, prompts)
            model = load_run_model(header, record["model"], models)
            difference = largest_mass_difference(last_row_probabilities(model, ids, chunk_tokens=chunk_tokens),
                                                 attention)
        checks.append(TrialCheck(Path(run_dir).name, record["trial_id"], int(record["context_length"]),
                                 int(record["prompt_tokens"]), float(record["depth"]), record["status"],
                                 bool(record["correct"]), float(record["elapsed_s"]), difference))
    return checks


def _prompt_ids(run_dir: Path, record: dict[str, Any], attention: Any, prompts: dict[str, Any]) -> list[int]:
    """The trial's saved input ids, checked against its record's hash; SystemExit naming the fix when missing."""
    from evalkit.prompt.tokenization import ids_sha256

    trial = f"{run_dir}: trial {record['trial_id']}"
    if attention is None:
        raise SystemExit(f"{trial}: no attention array; run the config with attention.capture: true")
    saved = prompts.get(record["trial_id"])
    if saved is None:
        raise SystemExit(f"{trial}: no saved prompt (prompts.jsonl); run the config with save_prompts: true")
    ids = [int(token) for token in saved["input_ids"]]
    if ids_sha256(ids) != record["prompt_sha256"]:
        raise SystemExit(f"{trial}: the saved prompt's hash is not the record's prompt_sha256; rerun that trial")
    return ids


def _cell(value: float | None, digits: str) -> str:
    return "n/a" if value is None else format(value, digits)


def markdown_table(checks: list[TrialCheck], runs: dict[str, LengthRun]) -> str:
    """The table (one row per trial), a wall-time line per length run, and the verdict line."""
    lines = ["| length | prompt tokens | depth | seconds | peak RSS GiB | correct | max abs mass diff |",
             "| ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for check in checks:
        run = runs.get(check.run_dir)
        rss = None if run is None else run.peak_rss_bytes / GIB
        diff = "skipped" if check.difference is None else f"{check.difference:.2e}"
        lines.append(f"| {check.context_length} | {check.prompt_tokens} | {check.depth:g} | {check.elapsed_s:.1f} | "
                     f"{_cell(rss, '.2f')} | {'yes' if check.correct else 'no'} | {diff} |")
    lines.append("")
    for run in runs.values():
        if any(check.run_dir == run.run_dir for check in checks):
            lines.append(f"- {run.run_dir}: evalkit run {run.wall_s:.1f} s wall (model load included), "
                         f"peak RSS {run.peak_rss_bytes / GIB:.2f} GiB")
    lines.append(verdict(checks))
    return "\n".join(lines)


def verdict(checks: list[TrialCheck]) -> str:
    """``largest |mass difference| over N trials: X (within 1e-4: yes|no)``."""
    differences = [c.difference for c in checks if c.difference is not None]
    if not differences:
        return f"largest |mass difference|: no trial checked (within {TOLERANCE:g}: no)"
    largest = max(differences)
    return (f"largest |mass difference| over {len(differences)} trials: {largest:.2e} "
            f"(within {TOLERANCE:g}: {'yes' if passed(checks) else 'no'})")


def passed(checks: list[TrialCheck]) -> bool:
    """At least one trial checked, and every checked trial within ``TOLERANCE``."""
    differences = [c.difference for c in checks if c.difference is not None]
    return bool(differences) and max(differences) <= TOLERANCE


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="eval config to run (default: %(default)s)")
    parser.add_argument("--lengths", type=int, nargs="+", help="context lengths instead of the config's")
    parser.add_argument("--output-dir", type=Path, help="folder of the per-length runs (default: the config's)")
    parser.add_argument("--recheck-only", type=Path, metavar="RUN_DIR",
                        help="recheck an existing run (or this script's output folder) without running")
    parser.add_argument("--chunk-tokens", type=int, default=2048, help="keys per chunk of the recheck's softmax")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.recheck_only is not None:
        folder = args.recheck_only
        run_dirs = run_dirs_of(folder)
        runs = read_measurements(folder if folder not in run_dirs else folder.parent)
    else:
        from evalkit.config.schema import load_config
        from evalkit.errors import EvalkitError

        try:
            config = load_config(args.config)
        except EvalkitError as err:
            raise SystemExit(str(err)) from None
        out_dir = args.output_dir or Path(config.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        runs = {run.run_dir: run for run in run_lengths(args.config, args.lengths or list(config.context_lengths),
                                                         out_dir)}
        run_dirs = [out_dir / name for name in runs]
    models: dict[str, Any] = {}  # one load per model for every run directory
    checks = [check for run_dir in run_dirs for check in recheck_run(run_dir, chunk_tokens=args.chunk_tokens,
                                                                     models=models)]
    print(markdown_table(checks, runs))
    return 0 if passed(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
