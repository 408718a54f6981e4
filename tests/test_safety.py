"""Safety: YAML never builds objects, remote code runs only when asked (and the report says so),
names cannot write outside the output directory, and text from models, tasks and records is escaped."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from conftest import write_config
from evalkit.cli import main
from report_fixtures import grid_records, make_record, write_header, write_records

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: one thread is fastest

REPO = Path(__file__).resolve().parent.parent
HOSTILE_MODEL = "<img src=x onerror=alert(1)>/../../../evil"
HOSTILE_TASK = "<b>bold</b>&amp;"


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- YAML


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system [\"touch {marker}\"]",
                                 "!!python/object/new:subprocess.Popen [[touch, {marker}]]",
                                 "!!python/name:os.system"])
@pytest.mark.parametrize("where", ["config", "task"])
def test_yaml_tags_that_build_objects_are_refused_and_never_run(tmp_path, capsys, tag, where):
    marker = tmp_path / "pwned"
    evil = tag.format(marker=marker)
    task = tmp_path / "evil.yaml"
    task.write_text("name: evil\nneedle: 'The code is {value}.'\nvalue: {kind: word}\nquestion: q\n"
                    + (f"description: {evil}\n" if where == "task" else ""))
    config = tmp_path / "cfg.yaml"
    config.write_text(f"models: [m]\ntasks: ['{task}']\ncontext_lengths: [128]\ndepths: [0.5]\noutput_dir: out\n"
                      + (f"samples: {evil}\n" if where == "config" else "samples: 1\n"))
    assert main(["validate", str(config)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    bad_file = config if where == "config" else task
    assert re.search(rf"{re.escape(str(bad_file))}: line \d+, column \d+: invalid YAML \(could not determine a "
                     r"constructor for the tag .*python/.*tags that build Python objects are refused", line), line
    assert not marker.exists()


def test_the_package_reads_yaml_with_safe_load_only():
    unsafe = re.compile(r"yaml\.(load|unsafe_load|full_load|load_all|unsafe_load_all)\(|yaml\.(Unsafe|Full)?Loader\b")
    offenders = [f"{path.relative_to(REPO)}:{n}" for path in sorted((REPO / "evalkit").rglob("*.py"))
                 for n, text in enumerate(path.read_text().splitlines(), 1) if unsafe.search(text)]
    assert offenders == []
    # configs, task files and --set values all go through one loader built on yaml.SafeLoader
    assert "class _UniqueKeySafeLoader(yaml.SafeLoader):" in (REPO / "evalkit" / "config" / "yaml_io.py").read_text()
    assert "safe_load_text(" in (REPO / "evalkit" / "config" / "schema.py").read_text()


# ---------------------------------------------------------------- trust_remote_code


@pytest.fixture
def from_pretrained_calls(monkeypatch):
    """Record the trust_remote_code argument of every from_pretrained call (config, model, tokenizer)."""
    import transformers

    calls: list[tuple[str, object]] = []
    for name in ("AutoConfig", "AutoModelForCausalLM", "AutoTokenizer"):
        cls = getattr(transformers, name)
        real = cls.from_pretrained.__func__

        def spy(klass, *args, _real=real, _name=name, **kwargs):
            calls.append((_name, kwargs.get("trust_remote_code", "not passed")))
            return _real(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    return calls


def _one_trial_config(tmp_path: Path, model: str, name: str = "cfg") -> Path:
    return write_config(tmp_path / f"{name}.yaml", models=[{"name": model, "dtype": "float32", "device": "cpu",
                        "max_new_tokens": 8}], tasks=["passkey"], context_lengths=[128], depths=[0.5], samples=1,
                        output_dir=str(tmp_path / name))


def test_trust_remote_code_is_off_unless_turned_on_and_the_report_says_when_it_was_on(
    tmp_path, tiny_model_dir, from_pretrained_calls, capsys
):
    off = _one_trial_config(tmp_path, str(tiny_model_dir), "off")
    assert main(["run", str(off), "--quiet"]) == 0
    assert {name for name, _ in from_pretrained_calls} == {"AutoConfig", "AutoModelForCausalLM", "AutoTokenizer"}
    assert all(flag is False for _, flag in from_pretrained_calls), from_pretrained_calls
    report = (tmp_path / "off" / "report" / "report.md").read_text()
    assert "trust_remote_code: off for every model" in report and "trust_remote_code was ON" not in report

    from_pretrained_calls.clear()
    on = _one_trial_config(tmp_path, str(tiny_model_dir), "on")
    assert main(["run", str(on), "--quiet", "--set", "models.0.trust_remote_code=true"]) == 0
    assert from_pretrained_calls and all(flag is True for _, flag in from_pretrained_calls), from_pretrained_calls
    for name in ("report.md", "report.html"):
        text = (tmp_path / "on" / "report" / name).read_text()
        assert "trust_remote_code was ON" in text and "trust_remote_code: ON" in text, name


# ---------------------------------------------------------------- paths


def test_task_names_cannot_point_outside_the_task_folders(tmp_path, capsys):
    config = write_config(tmp_path / "cfg.yaml", models=["m"], tasks=["../../x"], context_lengths=[128],
                          depths=[0.5], samples=1, output_dir=str(tmp_path / "out"))
    assert main(["validate", str(config)]) == 2
    assert "tasks[0]: ../../x: not a task file" in capsys.readouterr().err
    task = tmp_path / "t.yaml"
    task.write_text("name: ../../x\nneedle: 'The code is {value}.'\nvalue: {kind: word}\nquestion: q\n")
    config = write_config(tmp_path / "cfg.yaml", models=["m"], tasks=[str(task)], context_lengths=[128],
                          depths=[0.5], samples=1, output_dir=str(tmp_path / "out"))
    assert main(["validate", str(config)]) == 2
    assert "name: '../../x' does not match" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_model_named_with_dotdots_writes_only_inside_the_output_dir(tmp_path, tiny_model_dir, monkeypatch, capsys):
    # the model is named by a relative path that climbs with ".." (and the run writes charts named after it)
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    name = os.path.relpath(tiny_model_dir, work)
    assert name.startswith("..")
    config = _one_trial_config(tmp_path, name, "run")
    before = files_under(tmp_path) | files_under(tiny_model_dir)
    assert main(["run", str(config), "--quiet"]) == 0
    written = (files_under(tmp_path) | files_under(tiny_model_dir)) - before
    run_dir = (tmp_path / "run").resolve()
    assert written and all(run_dir in p.resolve().parents for p in written), sorted(map(str, written))
    charts = [p.name for p in written if p.suffix == ".png"]
    assert charts and all(".." not in c and "/" not in c for c in charts)


@pytest.mark.parametrize(("command", "link", "target"), [("report", "report", "victim"),
                                                       ("view", "viewer.html", "victim/viewer.html")])
def test_a_report_folder_or_viewer_linked_out_of_the_run_dir_is_refused_writing_nothing(tmp_path, capsys, command,
                                                                                      link, target):
    run = tmp_path / "run"
    write_header(run)
    write_records(run, grid_records())
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "keep.txt").write_text("mine")
    (run / link).symlink_to(Path("..") / target)
    before = files_under(tmp_path)
    assert main([command, str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{run / link}: is a symbolic link to {tmp_path / target}, outside the run directory" in err
    assert "--out" in err
    assert files_under(tmp_path) == before and (tmp_path / "victim" / "keep.txt").read_text() == "mine"


def test_a_run_does_not_write_its_report_through_a_linked_report_folder(tmp_path, tiny_model_dir, capsys):
    config = _one_trial_config(tmp_path, str(tiny_model_dir), "run")
    (tmp_path / "victim").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "report").symlink_to(Path("..") / "victim")
    assert main(["run", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "outside the run directory" in err
    assert not any((tmp_path / "victim").iterdir()) and (tmp_path / "run" / "trials.jsonl").is_file()


def test_hostile_model_and_task_names_stay_inside_the_report_dir_and_are_escaped(tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    absolute = "/etc/../../abs-model"  # a second model, so comparison charts are named after both
    write_header(run_dir, models={HOSTILE_MODEL: "abc", absolute: "def"}, trust_remote_code={HOSTILE_MODEL: True})
    records = grid_records(model=HOSTILE_MODEL, task=HOSTILE_TASK) + grid_records(model=absolute, task=HOSTILE_TASK)
    records.append(make_record(trial_id="extra", model=HOSTILE_MODEL, task=HOSTILE_TASK, correct=False,
                               generated="<script>alert('model output')</script>"))
    write_records(run_dir, records)
    out = tmp_path / "runs" / "r1" / "report"
    before = files_under(tmp_path)
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    written = files_under(tmp_path) - before
    assert written and all(out.resolve() in p.resolve().parents for p in written)
    names = sorted(p.name for p in written if p.suffix == ".png")
    assert any(n.startswith("difference_") for n in names) and all(".." not in n for n in names), names
    html = (out / "report.html").read_text()
    for raw in ("<img src=x", "<b>bold</b>", "<script>alert("):
        assert raw not in html, raw
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;b&gt;bold&lt;/b&gt;&amp;amp;" in html
    # in Markdown, text inside a code span is shown literally; outside one, tags must be escaped
    for name in ("report.md", "summary.md"):
        prose = re.sub(r"`[^`\n]*`", "", (out / name).read_text())
        assert "<img src=x" not in prose and "<b>bold</b>" not in prose and "<script>" not in prose, name


BACKTICK_MODEL = "r``<img src=x onerror=alert(8)>``s"  # two backticks end a ``-fenced code span early


def _html_nodes(markdown: str) -> list[str]:
    """The raw HTML nodes a CommonMark renderer (markdown-it-py) makes of ``markdown``: inline and block."""
    from markdown_it import MarkdownIt

    found = []
    for token in MarkdownIt("commonmark").enable("table").parse(markdown):
        found += [t.content for t in [token, *(token.children or [])] if t.type in ("html_inline", "html_block")]
    return found


def test_backticks_in_a_model_name_or_run_dir_never_end_a_code_span(tmp_path):
    """Issue 19 R7: record and config text in a code span is fenced longer than any backtick run inside it."""
    run_dir = tmp_path / "runs" / "d``<img src=x onerror=alert(9)>``ir"
    write_header(run_dir, models={BACKTICK_MODEL: "`rev``"}, config_path="c``<img src=x>``.yaml")
    write_records(run_dir, grid_records(model=BACKTICK_MODEL))
    out = tmp_path / "report"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    for name in ("report.md", "summary.md"):
        markdown = (out / name).read_text()
        assert BACKTICK_MODEL in markdown or name == "summary.md", name  # shown literally, inside a code span
        assert [n for n in _html_nodes(markdown) if "<img" in n] == [], name


@pytest.mark.parametrize("text", ["a``b", "`lead", "trail`", "``", "x ` y `` z ```", "plain", "<img src=x>"])
def test_a_code_span_shows_any_text_literally(text):
    from markdown_it import MarkdownIt

    from evalkit.report.document.blocks import Code, md_text

    html = MarkdownIt("commonmark").render(md_text(("see ", Code(text), " end")))
    code = re.search(r"<code>(.*)</code>", html)
    assert code is not None and html.count("<code>") == 1, html
    assert code.group(1) == text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"), html


@pytest.mark.parametrize("text, key", [
    ("models: [x]\ntasks: [passkey]\ndepths: [0]\ndepths: [1]\n", "depths"),
    ("models:\n  - name: x\n    dtype: float32\n    dtype: bfloat16\ntasks: [passkey]\n", "dtype"),
])
def test_a_key_written_twice_is_refused_not_silently_overwritten(tmp_path, text, key):
    from evalkit.config.schema import load_config
    from evalkit.errors import ConfigError

    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"dup.yaml: line \d+: key '{key}' appears twice \(first on line \d+\)"):
        load_config(path)
