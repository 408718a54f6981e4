"""The run directory: header, append-only trial records, resume, and an exclusive lock.

Layout of ``RUN_DIR``::

    header.json      what defines the run (config, its hash, versions, seed, model revisions)
    trials.jsonl     one TrialRecord per line, appended and fsync'ed as each trial ends
    prompts.jsonl    with ``save_prompts: true``: the exact token ids and text of every prompt
    run.lock         pid of the process that holds the directory while it runs
    report/          tables and charts written at the end of the run

A killed run leaves at most one torn last line; it is cut off on the next open and that
trial runs again, so no finished trial is lost and none is recorded twice.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

from evalkit.errors import RunDirError
from evalkit.types import BuiltPrompt, TrialRecord

log = logging.getLogger(__name__)

HEADER_FILE = "header.json"
RECORDS_GLOB = "trials*.jsonl"
PROMPTS_FILE = "prompts.jsonl"
LOCK_FILE = "run.lock"
# Header fields that must agree for a rerun to resume into the same directory.
IDENTITY_FIELDS = ("config_hash", "models")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class RunLock:
    """An exclusive pid lock file; a lock left by a dead process is taken over."""

    def __init__(self, run_dir: Path, name: str = LOCK_FILE) -> None:
        self.path = run_dir / name
        self.held = False

    def acquire(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder_pid()
                if holder is not None and holder != os.getpid() and _pid_alive(holder):
                    raise RunDirError(
                        f"{self.path.parent}: held by a running evalkit process (pid {holder}); "
                        "wait for it to finish or choose another output_dir"
                    ) from None
                log.warning("taking over stale lock %s (pid %s is gone)", self.path, holder)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self.held = True
            return
        raise RunDirError(f"{self.path}: could not take the lock; remove the file if no run uses it")

    def _holder_pid(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or "-1")
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def repair_torn_tail(path: Path) -> int:
    """Cut a partial last line (a write killed half-way) off ``path``; return bytes removed."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as f:
        f.truncate(keep)
    log.warning("%s: removed a torn last line (%d bytes); that trial runs again", path, len(data) - keep)
    return len(data) - keep


def read_record_lines(path: Path) -> Iterable[dict[str, Any]]:
    """Yield the complete JSON records of one records file, skipping unparsable lines."""
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.endswith("\n"):
                log.warning("%s:%d: torn last line skipped", path, line_number)
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: unparsable line skipped", path, line_number)


class RunStore:
    """Owns one run directory for the length of a run (use as a context manager)."""

    def __init__(
        self, run_dir: str | Path, records_name: str = "trials.jsonl", lock_name: str = LOCK_FILE,
        prompts_name: str = PROMPTS_FILE,
    ) -> None:
        # several processes on one run (evalkit/distributed.py) each pass their own file names
        self.run_dir = Path(run_dir)
        self.records_path = self.run_dir / records_name
        self.prompts_path = self.run_dir / prompts_name
        self.lock = RunLock(self.run_dir, lock_name)

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, header: dict[str, Any]) -> set[str]:
        """Lock the directory, check or write the header, and return the finished trial ids."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        try:
            self._check_or_write_header(header)
            for path in [*sorted(self.run_dir.glob(RECORDS_GLOB)), self.prompts_path]:
                if path.exists():
                    repair_torn_tail(path)
            return self.finished_ids()
        except BaseException:
            self.lock.release()
            raise

    def _check_or_write_header(self, header: dict[str, Any]) -> None:
        header_path = self.run_dir / HEADER_FILE
        if not header_path.exists():
            _write_atomic(header_path, json.dumps(header, indent=2, sort_keys=True) + "\n")
            return
        try:
            existing = json.loads(header_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise RunDirError(f"{header_path}: unreadable header ({err}); move the directory away") from None
        for key in IDENTITY_FIELDS:
            if existing.get(key) != header.get(key):
                raise RunDirError(
                    f"{self.run_dir}: holds a run of a different config ({key}: "
                    f"{existing.get(key)!r} here, {header.get(key)!r} now); start a new run with "
                    "--output-dir NEW_DIR, or delete the directory to start over"
                )

    def finished_ids(self) -> set[str]:
        """Ids of trials with a complete record in any records file of this run."""
        ids: set[str] = set()
        for path in sorted(self.run_dir.glob(RECORDS_GLOB)):
            ids.update(rec["trial_id"] for rec in read_record_lines(path) if "trial_id" in rec)
        return ids

    def append(self, record: TrialRecord) -> None:
        """Append one record and force it to disk before returning."""
        self._append_line(self.records_path, dataclasses.asdict(record))

    def save_prompt(self, trial_id: str, prompt: BuiltPrompt, text: str) -> None:
        """Keep the exact prompt (token ids and decoded text) so one trial can be rerun by hand."""
        regions = {name: [s.token_start, s.token_end] for name, s in prompt.regions.items()}
        row = {"trial_id": trial_id, "input_ids": list(prompt.input_ids), "regions": regions, "text": text}
        self._append_line(self.prompts_path, row)

    @staticmethod
    def _append_line(path: Path, row: dict[str, Any]) -> None:
        line = json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n"
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        self.lock.release()
