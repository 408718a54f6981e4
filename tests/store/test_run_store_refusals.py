"""What the store refuses in one line (exit 2) instead of a traceback or a mixed run (issue 18 D1, D6).

File-system failures are injected at the write call (tests run as root, so chmod cannot make a place
read-only): ``os.fsync`` raises for the file named, which is where a full disk or a read-only mount shows.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from conftest import write_config
from evalkit.cli import main
from evalkit.errors import RunDirError
from evalkit.store import format as fmt

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, model_dir: Path, **changes) -> Path:
    fields = dict(models=[{"name": str(model_dir), "dtype": "float32", "device": "cpu", "max_new_tokens": 8}],
                  tasks=["passkey"], context_lengths=[128], depths=[0.0, 1.0], samples=1, seed=5,
                  output_dir=str(tmp_path / "run"))
    fields.update(changes)
    return write_config(tmp_path / "cfg.yaml", **fields)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_a_changed_task_file_is_refused_on_rerun(tmp_path, tiny_model_dir, capsys):
    task = tmp_path / "mine.yaml"
    task.write_text((REPO / "tasks" / "passkey.yaml").read_text().replace("name: passkey", "name: mine"))
    config = _config(tmp_path, tiny_model_dir, tasks=[str(task)])
    assert main(["run", str(config), "--limit", "1", "--quiet", "--no-report"]) == 0
    header = fmt.read_header(tmp_path / "run")
    assert set(header["task_hashes"]) == {"mine"} and header["task_files"]["mine"] == str(task)

    task.write_text(task.read_text().replace("What is the pass key?", "Which pass key was given?"))
    capsys.readouterr()
    assert main(["run", str(config), "--quiet", "--no-report"]) == 2
    err = _one_line_error(capsys)
    assert str(task) in err and "task 'mine' changed" in err and "--output-dir" in err
    lines = (tmp_path / "run" / "trials.jsonl").read_text().splitlines()
    assert len(lines) == 1  # nothing of the new task version was mixed in


def test_output_dir_that_is_a_file_is_one_line(tmp_path, tiny_model_dir, capsys):
    (tmp_path / "run").write_text("not a folder")
    assert main(["run", str(_config(tmp_path, tiny_model_dir)), "--quiet"]) == 2
    assert "is a file, not a run directory" in _one_line_error(capsys)


@pytest.mark.parametrize(("change", "reason"), [
    ({"context_lengths": [192]}, "context_length 192 is not one of [128]"),
    ({"seed": 6}, "is not the id this run gives that trial"),
    ({"samples": 2}, "sample 1 is not below samples 1"),
])
def test_another_runs_records_copied_in_are_refused_by_report_view_and_resume(tmp_path, tiny_model_dir, capsys,
                                                                             change, reason):
    run_a = tmp_path / "a" / "run"
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
    config_a = _config(tmp_path / "a", tiny_model_dir)
    config_b = _config(tmp_path / "b", tiny_model_dir, **change)
    for config in (config_a, config_b):
        assert main(["run", str(config), "--quiet", "--no-report"]) == 0
    b_records = (tmp_path / "b" / "run" / "trials.jsonl").read_text()
    if "samples" in change:  # only the record of the sample run A never planned
        b_records = "".join(line + "\n" for line in b_records.splitlines() if json.loads(line)["sample"] == 1)
    (run_a / "trials.1.jsonl").write_text(b_records)  # cp runB/trials.jsonl runA/trials.1.jsonl
    capsys.readouterr()
    before = sorted(p.name for p in run_a.iterdir())
    for command in (["report", str(run_a)], ["view", str(run_a)], ["run", str(config_a), "--quiet", "--no-report"]):
        assert main(command) == 2, command
        err = _one_line_error(capsys)
        assert f"{run_a / 'trials.1.jsonl'}:1: not a trial of this run's header (" in err and reason in err, err
        assert "move trials.1.jsonl out of" in err
    assert sorted(p.name for p in run_a.iterdir()) == before  # no report, no viewer, nothing rewritten
    (run_a / "trials.1.jsonl").unlink()
    assert main(["report", str(run_a)]) == 0  # the run's own records report as before


def _fail_fsync(monkeypatch, name: str, code: int) -> None:
    """Make ``os.fsync`` raise ``OSError(code)`` for files whose name contains ``name``."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if name in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(code, os.strerror(code))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_while_appending_is_one_line_and_keeps_what_was_written(tmp_path, tiny_model_dir, capsys,
                                                                         monkeypatch):
    config = _config(tmp_path, tiny_model_dir)
    assert main(["run", str(config), "--limit", "1", "--quiet", "--no-report"]) == 0
    _fail_fsync(monkeypatch, "trials.jsonl", errno.ENOSPC)
    capsys.readouterr()
    assert main(["run", str(config), "--quiet", "--no-report"]) == 2
    err = _one_line_error(capsys)
    assert "trials.jsonl: cannot append a line (No space left on device)" in err and "rerun" in err
    monkeypatch.undo()
    records = [json.loads(line) for line in (tmp_path / "run" / "trials.jsonl").read_text().splitlines()]
    assert records and records[0]["trial_id"]  # the first run's record is still there
    assert not (tmp_path / "run" / "run.lock").exists()  # the lock was released


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC])
def test_a_read_only_place_or_full_disk_is_one_line_and_leaves_nothing(tmp_path, tiny_model_dir, capsys, monkeypatch,
                                                                       code):
    _fail_fsync(monkeypatch, "header.json", code)
    assert main(["run", str(_config(tmp_path, tiny_model_dir)), "--quiet"]) == 2
    assert f"header.json: cannot write ({os.strerror(code)})" in _one_line_error(capsys)
    # README: a run that fails before its first record leaves nothing (no header, no .header.json.tmp<pid>)
    assert not (tmp_path / "run").exists(), sorted(p.name for p in (tmp_path / "run").iterdir())


def test_a_failed_atomic_write_removes_its_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "prompts.jsonl"
    target.write_text("old\n")
    _fail_fsync(monkeypatch, "prompts.jsonl", errno.ENOSPC)
    with pytest.raises(RunDirError, match="No space left on device"):
        fmt.write_atomic(target, "new\n")
    assert [p.name for p in tmp_path.iterdir()] == ["prompts.jsonl"] and target.read_text() == "old\n"


def test_report_out_on_a_file_or_a_read_only_place_is_one_line(tmp_path, capsys, monkeypatch):
    from report_fixtures import write_grid_run

    run = write_grid_run(tmp_path / "run")
    (tmp_path / "file").write_text("x")
    assert main(["report", str(run), "--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder for the report" in _one_line_error(capsys)

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(Path, "write_text", read_only)
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 2
    err = _one_line_error(capsys)
    # report resumes nothing: its advice is its own (free space or another --out), not a run's "rerun to resume"
    assert "cannot write the report (Read-only file system)" in err and "another --out" in err
    assert "resume" not in err and "--output-dir" not in err


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC])
def test_view_out_on_a_read_only_place_or_full_disk_is_one_line(tmp_path, capsys, monkeypatch, code):
    from report_fixtures import write_grid_run

    run = write_grid_run(tmp_path / "run")
    real = Path.write_text

    def failing(self, *args, **kwargs):
        if self.name == "v.html":
            raise OSError(code, os.strerror(code))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", failing)
    (tmp_path / "ro").mkdir()
    assert main(["view", str(run), "--out", str(tmp_path / "ro" / "v.html")]) == 2
    err = _one_line_error(capsys)
    assert f"v.html: cannot write the viewer ({os.strerror(code)})" in err and "another --out" in err


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_records_file_made_unwritable_mid_run_is_one_line(tmp_path, tiny_model_dir, capsys, monkeypatch, code):
    config = _config(tmp_path, tiny_model_dir, depths=[0.0, 0.5, 1.0])
    real_open = open
    calls = {"appends": 0}

    def flaky_open(file, mode="r", *args, **kwargs):
        # the second record append fails, as after `chattr +i trials.jsonl` mid-run
        if str(file).endswith("trials.jsonl") and mode == "a":
            calls["appends"] += 1
            if calls["appends"] == 2:
                raise OSError(code, os.strerror(code))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", flaky_open)
    assert main(["run", str(config), "--quiet", "--no-report"]) == 2
    assert f"cannot append a line ({os.strerror(code)})" in _one_line_error(capsys)
    monkeypatch.undo()
    assert len((tmp_path / "run" / "trials.jsonl").read_text().splitlines()) == 1
