"""The run directory while a run holds it: header check, append-only trial records, resume, the lock.

The format (file names, header, record lines, the older schema) is ``evalkit/store/format.py``'s; this
module writes and reads only through it. A killed run leaves at most one torn last line; it is cut off
on the next open and that trial runs again, so no finished trial is lost and none is recorded twice.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evalkit.errors import RunDirError

try:
    import fcntl
except ImportError:  # Windows: RunLock falls back to a pid file
    fcntl = None  # type: ignore[assignment]
import evalkit.store.format as fmt
from evalkit.store.format import HEADER_FILE, LOCK_FILE, PROMPTS_FILE, RECORDS_FILE, disk_errors
from evalkit.store.growth import grown_header
from evalkit.store.run_facts import HARDWARE_KEY, ModelFacts, with_end, with_model_facts
from evalkit.store.run_plan import check_in_plan, header_plan
from evalkit.types import BuiltPrompt, TrialRecord

log = logging.getLogger(__name__)

# Header fields that must agree for a rerun to resume into the same directory (task_hashes: see _check_tasks).
IDENTITY_FIELDS = ("config_hash", "models")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """An exclusive lock on a run directory, held by one live process.

    The kernel holds it (``flock`` on ``run.lock``) and drops it when the holder dies however it
    dies, so a lock left by a killed run is free, a reused pid cannot keep it, and of several runs
    racing for a stale lock exactly one wins. The file holds the holder's pid for the error message.
    Where ``flock`` is missing (Windows) a pid file with a liveness check is used instead.
    """

    def __init__(self, run_dir: Path, name: str = LOCK_FILE) -> None:
        self.path = run_dir / name
        self.held = False
        self._fd: int | None = None

    def acquire(self) -> None:
        if fcntl is None:
            return self._acquire_pid_file()
        for _ in range(10):
            with disk_errors(self.path, "take the lock"):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = self._holder_pid()
                os.close(fd)
                raise self._held_error(holder) from None
            if not _same_file(fd, self.path):  # the holder released (removed) it between our open and lock
                os.close(fd)
                continue
            stale = self._holder_pid()
            if stale is not None and stale != os.getpid():
                log.warning("taking over the lock %s of pid %s (that process is gone)", self.path, stale)
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            self._fd, self.held = fd, True
            return None
        raise RunDirError(f"{self.path}: could not take the lock; remove the file if no run uses it")

    def _acquire_pid_file(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder_pid()
                if holder is not None and holder != os.getpid() and _pid_alive(holder):
                    raise self._held_error(holder) from None
                log.warning("taking over stale lock %s (pid %s is gone)", self.path, holder)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self.held = True
            return
        raise RunDirError(f"{self.path}: could not take the lock; remove the file if no run uses it")

    def _held_error(self, holder: int | None) -> RunDirError:
        who = f"pid {holder}" if holder is not None else "pid unknown"
        return RunDirError(
            f"{self.path.parent}: held by a running evalkit process ({who}); "
            "wait for it to finish or choose another output_dir"
        )

    def _holder_pid(self) -> int | None:
        """The pid written in the lock file; None for a missing, new (empty) or unreadable file."""
        try:
            pid = int(self.path.read_text().strip() or "0")
        except (OSError, ValueError):
            return None
        return pid if pid > 0 else None

    def release(self) -> None:
        if self.held:
            # remove the file while still holding it, so no one can lock the old file afterwards
            self.path.unlink(missing_ok=True)
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self.held = False


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def repair_torn_tail(path: Path) -> int:
    """Cut a partial last line (a write killed half-way) off ``path``; return bytes removed."""
    with disk_errors(path, "repair"):
        data = path.read_bytes()
        if not data or data.endswith(b"\n"):
            return 0
        keep = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(keep)
    log.warning("%s: removed a torn last line (%d bytes); that trial runs again", path, len(data) - keep)
    return len(data) - keep


def read_record_lines(path: Path) -> list[dict[str, Any]]:
    """The valid records of one records file as JSON objects (schema 1 upgraded); invalid lines are skipped."""
    return [fmt.record_row(record) for _, record in fmt.read_records(path).records]


class RunStore:
    """Owns one run directory for the length of a run (use as a context manager)."""

    def __init__(
        self, run_dir: str | Path, records_name: str = RECORDS_FILE, lock_name: str = LOCK_FILE,
        prompts_name: str = PROMPTS_FILE,
    ) -> None:
        # several processes on one run (evalkit/run/distributed.py) each pass their own file names
        self.run_dir = Path(run_dir)
        self.records_path = self.run_dir / records_name
        self.prompts_path = self.run_dir / prompts_name
        self.lock = RunLock(self.run_dir, lock_name)
        # a new run's header waits for its first record: a run that fails before (a model that does not
        # load) leaves nothing behind, so the corrected config is not refused as "a different config"
        self._pending_header: dict[str, Any] | None = None
        self._created_dir = False

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, header: dict[str, Any]) -> set[str]:
        """Lock the directory, check or write the header, and return the finished trial ids."""
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise RunDirError(f"{self.run_dir}: is a file, not a run directory; choose another --output-dir")
        self._created_dir = not self.run_dir.exists()
        with disk_errors(self.run_dir, "create the run directory"):
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        try:
            self._check_or_write_header(header)
            for path in [*fmt.records_files(self.run_dir), self.prompts_path]:
                if path.exists():
                    repair_torn_tail(path)
            self._check_records_in_plan(header)
            finished = self.finished_ids()
            self._keep_prompts_of(finished)
            return finished
        except BaseException:
            self.lock.release()
            raise

    def _check_or_write_header(self, header: dict[str, Any]) -> None:
        if not (self.run_dir / HEADER_FILE).exists():
            self._pending_header = header
            return
        existing = fmt.read_header(self.run_dir)
        grown = grown_header(self.run_dir, existing, header)
        if grown is not None:  # the same config with more samples: the run grows (store/growth.py)
            update_header(self.run_dir, lambda _: grown)
            existing = grown
        for key in IDENTITY_FIELDS:
            if existing.get(key) != header.get(key):
                raise RunDirError(
                    f"{self.run_dir}: holds a run of a different config ({key}: "
                    f"{existing.get(key)!r} here, {header.get(key)!r} now); start a new run with "
                    "--output-dir NEW_DIR, or delete the directory to start over"
                )
        _check_tasks(self.run_dir, existing, header)
        _warn_other_machine(self.run_dir, existing, header)
        if "planned" in header and existing.get("planned") != header["planned"]:
            # the plan of this call (another --limit, say): the report compares the records with it
            update_header(self.run_dir, lambda h: {**h, "planned": header["planned"]})

    def _check_records_in_plan(self, header: dict[str, Any]) -> None:
        """Refuse records of another run put among this run's (see ``store/run_plan.py``): resume would count
        trials it never ran, and the report would show cells it never planned."""
        on_disk = self.run_dir / HEADER_FILE
        plan = header_plan(fmt.read_header(self.run_dir) if on_disk.exists() else header)
        for path in fmt.records_files(self.run_dir):
            for line, record in fmt.read_records(path).records:
                check_in_plan(path, line, record, plan)

    def _records(self) -> list[TrialRecord]:
        """Every valid record of this run's records files (invalid lines are skipped with a warning)."""
        return [r for path in fmt.records_files(self.run_dir) for _, r in fmt.read_records(path).records]

    def finished_ids(self) -> set[str]:
        """Ids of trials with a complete, valid record in any records file of this run."""
        return {r.trial_id for r in self._records()}

    def skipped_ids(self) -> set[str]:
        """Ids of trials recorded with a status other than "ok" (e.g. skipped for lack of memory)."""
        return {r.trial_id for r in self._records() if r.status != "ok"}

    def forget_skipped(self) -> int:
        """Drop the records of skipped trials so they run again; return how many were dropped.

        Each records file is rewritten to a temporary file and renamed over the old one, so a kill
        leaves either the old or the new file, and every trial id stays on one line. Lines that are
        not valid records are kept as they are (readers skip them).
        """
        dropped = 0
        for path in fmt.records_files(self.run_dir):
            with disk_errors(path, "read"):
                lines = path.read_bytes().splitlines(keepends=True)
            keep = [line for line in lines if _status_of(line) in ("ok", None)]
            if len(keep) != len(lines):
                dropped += len(lines) - len(keep)
                fmt.write_atomic(path, b"".join(keep))
        self._keep_prompts_of(self.finished_ids())
        return dropped

    def _keep_prompts_of(self, finished: set[str]) -> None:
        """Drop saved prompts of trials without a record (killed, or forgotten), so a rerun saves each once."""
        if not self.prompts_path.exists():
            return
        with disk_errors(self.prompts_path, "read"):
            lines = self.prompts_path.read_bytes().splitlines(keepends=True)
        keep = [line for line in lines if _trial_id_of(line) in finished]
        if len(keep) != len(lines):
            fmt.write_atomic(self.prompts_path, b"".join(keep))

    def write_header(self) -> None:
        """Write a new run's header now (done by the first write of anything else; idempotent)."""
        if self._pending_header is not None:
            fmt.write_header(self.run_dir, self._pending_header)
            self._pending_header = None

    def update_header(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Apply ``change`` to the header: the pending one of a new run, else the one on disk."""
        if self._pending_header is not None:
            self._pending_header = change(self._pending_header)
        else:
            update_header(self.run_dir, change)

    def record_model(self, model: str, facts: ModelFacts) -> None:
        """Record a loaded model's facts (template hash, special tokens, parameters) in the header."""
        self.update_header(lambda header: with_model_facts(header, model, facts))

    def record_end(self, finished_at: str, seconds: float) -> None:
        """Record when this call ended and add its wall seconds; nothing for a run that wrote nothing."""
        if self._pending_header is None:
            update_header(self.run_dir, lambda header: with_end(header, finished_at, seconds))

    def append(self, record: TrialRecord) -> None:
        """Append one record and force it to disk before returning."""
        self.write_header()
        fmt.append_line(self.records_path, fmt.record_row(record))

    def save_prompt(self, trial_id: str, prompt: BuiltPrompt, text: str,
                    token_texts: Sequence[str] | None = None) -> None:
        """Keep the exact prompt (token ids and decoded text) so one trial can be rerun by hand, and each
        token's text (``token_texts``, one per id) so the viewer can colour the tokens by attention."""
        regions = {name: [s.token_start, s.token_end] for name, s in prompt.regions.items()}
        row = {"trial_id": trial_id, "input_ids": list(prompt.input_ids), "regions": regions, "text": text}
        if token_texts is not None:
            if len(token_texts) != len(prompt.input_ids):
                raise ValueError(f"{len(token_texts)} token texts for {len(prompt.input_ids)} tokens")
            row["token_texts"] = list(token_texts)
        self.write_header()
        fmt.append_line(self.prompts_path, row)

    def close(self) -> None:
        """Release the lock; a directory this run created and never wrote to is removed again."""
        self.lock.release()
        if self._pending_header is not None and self._created_dir:
            _remove_if_only_lock(self.run_dir, self.lock.path)


def update_header(run_dir: str | Path, change: Callable[[dict[str, Any]], dict[str, Any]]) -> bool:
    """Rewrite ``RUN_DIR/header.json`` as ``change`` returns it, keeping its schema version; False when none exists."""
    if not (Path(run_dir) / HEADER_FILE).exists():
        return False
    existing = fmt.read_header(run_dir)
    fmt.write_header(run_dir, {**change(existing), "schema_version": fmt.header_schema(existing)})
    return True


def _warn_other_machine(run_dir: Path, existing: dict[str, Any], header: dict[str, Any]) -> None:
    """The header keeps the machine that started the run: say so when a resume runs on another."""
    before, now = existing.get(HARDWARE_KEY), header.get(HARDWARE_KEY)
    if isinstance(before, dict) and isinstance(now, dict) and before != now:
        log.warning("%s: resumed on other hardware than the run started on; its header keeps the first machine's",
                    run_dir)


def _remove_if_only_lock(run_dir: Path, lock_path: Path) -> None:
    """Remove ``run_dir`` if it holds nothing but its lock file (best effort: a racing run may be writing)."""
    try:
        if {p.name for p in run_dir.iterdir()} <= {lock_path.name}:
            lock_path.unlink(missing_ok=True)
            run_dir.rmdir()
    except OSError:
        pass


def _status_of(line: bytes) -> str | None:
    """The status of a valid record line; None for a line that is not one."""
    try:
        return fmt.parse_line(line.rstrip(b"\n")).status
    except ValueError:
        return None


def _trial_id_of(line: bytes) -> str | None:
    """The ``trial_id`` of a saved-prompt line; None for a line that is not a JSON object with one."""
    try:
        row = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    tid = row.get("trial_id") if isinstance(row, dict) else None
    return tid if isinstance(tid, str) else None


def _check_tasks(run_dir: Path, existing: dict[str, Any], header: dict[str, Any]) -> None:
    """Refuse a rerun whose task files changed: the new task's trials would be mixed in beside the old ones.

    Headers written before task hashes were recorded (schema 1) have none to compare.
    """
    before, now = existing.get("task_hashes"), header.get("task_hashes")
    if not isinstance(before, dict) or not isinstance(now, dict):
        return
    files = header.get("task_files") or {}
    for name, digest in now.items():
        if name in before and before[name] != digest:
            where = files.get(name) or f"task {name}"
            raise RunDirError(
                f"{where}: task {name!r} changed since {run_dir} was started (content hash {before[name]} there, "
                f"{digest} now); run the changed task with --output-dir NEW_DIR, or restore the task file"
            )
