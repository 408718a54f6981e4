"""Command line: ``evalkit run | validate | plan | calibrate | report | view | export | agree | list | schema``.

Errors evalkit raises on purpose print as one line and exit 2; nothing else prints a traceback
unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any, Sequence

from evalkit.errors import EvalkitError
from evalkit.package_data import builtin_configs, package_version, resolve_config_path

log = logging.getLogger("evalkit")

EXAMPLES = """examples:
  evalkit run configs/quickstart.yaml
  evalkit run configs/quickstart.yaml --set depths=[0,0.5,1] --set samples=1 --limit 10
  evalkit run configs/quickstart.yaml --output-dir reports/runs/try2
  evalkit validate configs/quickstart.yaml
  evalkit calibrate configs/calibrate.yaml   (find where each model sits near 80% accuracy)
  evalkit run quickstart          (an example config by name, from any folder: see evalkit list configs)
  evalkit report reports/runs/quickstart
  evalkit view reports/runs/quickstart
  evalkit export reports/runs/quickstart --format parquet
  evalkit list
  evalkit schema config --out docs/schema/config.schema.json
"""

SCHEMA_EXAMPLES = """examples:
  evalkit schema config
  evalkit schema config --out docs/schema/config.schema.json
  evalkit schema task --out docs/schema/task.schema.json
  evalkit schema config --format markdown --out docs/reference/config.md

An editor with a YAML language server (VS Code's YAML extension) completes and checks a file whose first line is
  # yaml-language-server: $schema=../docs/schema/config.schema.json
"""


class _OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line, like evalkit's own (``error: ...``, exit 2), usage left to --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {self.prog}: {message}; see {self.prog} --help", file=sys.stderr)
        sys.exit(2)


def _throughput(text: str) -> float:
    """``--tokens-per-s``: a finite positive number (nan would print a nan wall time, inf one of 0 s)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a throughput; give a positive number of tokens per second")
    return value


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path,
                        help="eval config (YAML), e.g. configs/quickstart.yaml, or an example config's name (quickstart)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config field, VALUE in YAML: --set depths=[0,0.5,1] --set models.0.dtype=bfloat16",
    )
    # a plain string: Path("") would be ".", and the name is used as written (no YAML parsing)
    parser.add_argument("--output-dir", help="run directory (overrides output_dir), taken as written")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = _OneLineParser(
        prog="evalkit", description="Needle-position evals: where in a prompt can a model still find a fact?",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_config_commands(sub)
    _add_other_commands(sub)
    return parser


def _add_config_commands(sub: Any) -> None:  # argparse's subparsers action
    """run, validate and plan: the commands that read an eval config."""
    run = sub.add_parser("run", help="run (or resume) an eval config", epilog=EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_options(run)
    run.add_argument("--limit", type=int, metavar="N", help="run only the first N planned trials")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--no-report", action="store_true", help="skip writing the report at the end")
    run.add_argument("--retry-skipped", action="store_true",
                     help="run again the trials a previous run skipped (out of memory, a server still down "
                          "after its retries); by default they stay skipped")

    validate = sub.add_parser("validate", help="check a config, its tasks and model limits without running")
    _add_config_options(validate)

    plan = sub.add_parser("plan", help="count a config's trials, prompt and answer tokens, and estimate its wall time")
    _add_config_options(plan)
    plan.add_argument("--tokens-per-s", type=_throughput, metavar="N", help="a throughput you measured, for the time estimate (without it: a few calibration forwards on each model)")

    calibrate = sub.add_parser("calibrate", help="find each model's setting near a target accuracy (search block)")
    _add_config_options(calibrate)  # --output-dir: the search's folder (default: output_dir + "-calibrate")


def _add_other_commands(sub: Any) -> None:  # argparse's subparsers action
    """report, view and agree (run directories), list and schema."""
    report = sub.add_parser(
        "report", help="write report.html, report.md, tables and charts for run directories",
        epilog="examples:\n  evalkit report reports/runs/quickstart\n"
               "  evalkit report reports/runs/a reports/runs/b --out reports/compare --threshold 90%",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    report.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/report for one run)")
    report.add_argument(
        "--threshold", default=None, metavar="T",
        help="accuracy the effective context length must keep: a fraction (0.856) or a percentage (85.6%%); "
             "default 85.6%% as in RULER",
    )

    view = sub.add_parser(
        "view", help="write one self-contained HTML trial viewer (filter trials, open one: prompt, answer, attention)",
        epilog="examples:\n  evalkit view reports/runs/quickstart\n"
               "  evalkit view reports/runs/a reports/runs/b --out compare_viewer.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    view.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    view.add_argument("--out", type=Path, help="HTML file to write (default: RUN_DIR/viewer.html for one run)")

    export = sub.add_parser(
        "export", help="write a run's finished trials as Parquet, a Hugging Face dataset folder or Inspect AI logs",
        epilog="examples:\n  evalkit export reports/runs/quickstart --format parquet\n"
               "  evalkit export reports/runs/quickstart --format hf-dataset --out quickstart-dataset\n"
               "  evalkit export reports/runs/quickstart --format inspect && inspect view --log-dir "
               "reports/runs/quickstart/export/inspect\n\nneeds: pip install \"evalkit[export]\"",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    # a plain string: an unknown format is the exporter's one-line error, which lists the formats
    export.add_argument("--format", required=True, metavar="FORMAT", help="parquet, hf-dataset or inspect")
    export.add_argument("--out", type=Path, metavar="PATH",
                        help="file (parquet) or folder (hf-dataset, inspect); default RUN_DIR/export/...")

    agree = sub.add_parser(
        "agree", help="trial-by-trial agreement of two runs of one grid (e.g. transformers vs a served engine)",
        epilog="example:\n  evalkit agree reports/runs/quickstart reports/runs/quickstart-llamacpp",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    agree.add_argument("run_a", type=Path, metavar="RUN_A")
    agree.add_argument("run_b", type=Path, metavar="RUN_B")

    listing = sub.add_parser("list", help="list tasks, built-in models and example configs")
    listing.add_argument("what", nargs="?", choices=("tasks", "models", "configs"),
                         help="only tasks, only models or only example configs")

    schema = sub.add_parser(
        "schema", help="print the JSON Schema of config or task files, for editor completion and checks",
        epilog=SCHEMA_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    schema.add_argument("what", choices=("config", "task"), help="config: configs/*.yaml; task: tasks/*.yaml")
    schema.add_argument("--out", type=Path, metavar="FILE", help="write the schema to FILE instead of printing it")
    schema.add_argument("--format", choices=("json", "markdown"), default="json",
                        help="json: the JSON Schema (editors); markdown: the reference page of the documentation site")


def _load(args: argparse.Namespace):
    from evalkit.config.schema import load_config
    from evalkit.models.registry import resolve_model_defaults

    # a built-in base model's entry gets its plain-prompt default here, before checks, plans and hashes see it
    return resolve_model_defaults(load_config(args.config, list(args.overrides), output_dir=args.output_dir))


def cmd_run(args: argparse.Namespace) -> int:
    from evalkit.run.runner import run_eval

    if args.limit is not None and args.limit < 1:
        raise EvalkitError(f"--limit: {args.limit} is not a positive number of trials; use --limit 1 or more")
    config = _load(args)
    if args.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the weight-loading bar
    summary = run_eval(config, args.config, limit=args.limit, quiet=args.quiet, write_report=not args.no_report,
                       retry_skipped=args.retry_skipped)
    print(
        f"{summary.run_dir}: {summary.ran} trials run, {summary.already_done} already done, "
        f"{summary.planned} planned ({summary.elapsed_s:.1f} s)"
    )
    if summary.skipped:
        print(f"{summary.skipped} trials skipped (out of memory, see skip_reason); "
              "rerun with --retry-skipped to try them again")
    if summary.report_dir is not None:
        print(f"report: {summary.report_dir / 'report.md'}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from evalkit.run.arms import resolve_arm_heads
    from evalkit.run.plan import count_trials
    from evalkit.run.preflight import model_limits, prepare_tasks
    from evalkit.run.prompt_checks import check_prompts_fit, short_line_budgets

    config = _load(args)
    tasks = prepare_tasks(config, args.config)
    lengths = model_limits(config, args.config).lengths  # each model's lengths in its tokens
    check_prompts_fit(config, args.config, tasks, lengths)
    notes = short_line_budgets(config, args.config, tasks)
    from evalkit.attention.preflight import check_capture
    from evalkit.attention.token_mass import storage_line
    from evalkit.run.backend_checks import check_backends

    check_backends(config, args.config)
    check_capture(config, args.config)
    # as run does: arms' heads and layers against each model's, a mask_heads arm's from_run and its arrays
    resolve_arm_heads(config, args.config)
    trials = count_trials(config, {name: t.spec for name, t in tasks.items()})  # counted: a large grid stays fast
    print(f"{args.config}: ok ({len(config.models)} models x {len(tasks)} tasks, {trials} trials)")
    for model, row in lengths.header_row().items():  # context_unit: window: what each model's fractions come to
        print(f"{model}: context lengths {', '.join(f'{t:,}' for t in row['tokens'])} tokens "
              f"({row['window']:,}-token window)")
    for note in notes:
        print(f"warning: {note}")
    if config.attention.capture and config.attention.tokens:
        # every model's context length has the same share of the grid (a cross product); controls only make
        # prompts shorter
        share = trials // (len(config.context_lengths) * len(config.models))
        tokens = [length for m in config.models for length in lengths.tokens(m.label) for _ in range(share)]
        print(storage_line(tokens, config.attention.decode_steps + 1, config.attention.token_layers))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``evalkit report``: write report.html, report.md, tables and charts of RUN_DIRs (see ``write_report``)."""
    from evalkit.report import DEFAULT_THRESHOLD, parse_threshold, write_report
    from evalkit.store.format import REPORT_DIR, run_output

    out = args.out
    if out is None:
        if len(args.run_dirs) != 1:
            raise EvalkitError("report: several run directories need --out DIR for the merged report")
        out = run_output(args.run_dirs[0], REPORT_DIR)  # a link out of the run directory is refused
    try:
        threshold = DEFAULT_THRESHOLD if args.threshold is None else parse_threshold(args.threshold)
    except ValueError as err:
        raise EvalkitError(f"--threshold: {err}") from None
    paths = write_report(args.run_dirs, out, threshold=threshold)
    print(f"report: {paths.report_html}")
    print(f"markdown: {paths.report_md}")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    """``evalkit view``: write the trial viewer of RUN_DIRs (see ``report/document/viewer.py``)."""
    from evalkit.report.document.viewer import write_viewer
    from evalkit.store.format import VIEWER_FILE, run_output

    out = args.out
    if out is None:
        if len(args.run_dirs) != 1:
            raise EvalkitError("view: several run directories need --out FILE.html for the merged viewer")
        out = run_output(args.run_dirs[0], VIEWER_FILE)  # a link out of the run directory is refused
    elif out.is_dir():
        out = out / "viewer.html"
    if not out.parent.is_dir():
        raise EvalkitError(f"view: --out {out}: folder {out.parent} does not exist; create it or pick another path")
    path = write_viewer(args.run_dirs, out)
    print(f"viewer: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``evalkit export RUN_DIR --format F``: the finished trials in another tool's format (``evalkit/export/``)."""
    from evalkit.export import export_run

    result = export_run(args.run_dir, args.format, args.out)
    skipped = f" ({result.skipped} skipped trials left out)" if result.skipped else ""
    print(f"export: {result.trials} trials{skipped} -> {result.out}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """``evalkit plan CONFIG``: trials, prompt tokens with and without prefix reuse, answer tokens, wall time."""
    from evalkit.run.estimate import estimate_plan, format_estimate

    # without a given throughput each model is loaded and timed on a few short calibration forwards
    print(format_estimate(estimate_plan(_load(args), args.config, args.tokens_per_s, measure=args.tokens_per_s is None)))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``evalkit calibrate CONFIG``: the difficulty search; prints each setting, its interval and its steps."""
    from evalkit.search.calibrate import calibrate, format_calibration
    search_dir, args.output_dir = args.output_dir, None  # the search's folder; the config keeps its output_dir
    for result in calibrate(_load(args), args.config, search_dir):
        print(format_calibration(result))
    return 0


def cmd_agree(args: argparse.Namespace) -> int:
    """``evalkit agree RUN_A RUN_B``: answers equal, correctness equal (McNemar), gold log-prob differences."""
    from evalkit.report.analysis.agreement import agreement, format_agreement
    from evalkit.report.data.load import load_results

    frames = [load_results(path) for path in (args.run_a, args.run_b)]
    result = agreement(*frames)
    if result.pairs == 0:
        raise EvalkitError(f"agree: {args.run_a} and {args.run_b} share no finished trial of the same grid cell; "
                           "compare two runs of one grid")  # fmt: skip
    print(format_agreement(result, str(args.run_a), str(args.run_b)))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from evalkit.models import list_builtin_models
    from evalkit.tasks import list_tasks

    if args.what in (None, "tasks"):
        print("tasks:")
        tasks = list_tasks()
        width = max((len(task.name) for task in tasks), default=0)  # one column, however long a name is
        for task in tasks:
            print(f"  {task.name:<{width}}  {task.description}")
    if args.what in (None, "models"):
        print("built-in models:")
        for alias, description in list_builtin_models().items():
            print(f"  {alias:<24} {description}")
    if args.what in (None, "configs"):
        print("example configs (run one by name, e.g. evalkit run quickstart):")
        for name, path in builtin_configs().items():
            print(f"  {name:<24} {path}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """``evalkit schema config|task``: the JSON Schema generated from the pydantic model that validates the file
    (``--format markdown``: the same schema as the documentation site's reference page)."""
    from evalkit.config.json_schema import json_schema, schema_text
    from evalkit.config.schema import EvalConfig
    from evalkit.config.schema_markdown import schema_markdown
    from evalkit.tasks.spec import TaskSpec

    model = EvalConfig if args.what == "config" else TaskSpec
    if args.format == "markdown":
        command = f"evalkit schema {args.what} --format markdown --out docs/reference/{args.what}.md"
        text = schema_markdown(json_schema(model), command)
    else:
        text = schema_text(model)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    if not args.out.parent.is_dir():
        raise EvalkitError(f"schema: --out {args.out}: folder {args.out.parent} does not exist; create it or pick "
                           "another path")
    args.out.write_text(text, encoding="utf-8")
    print(f"schema: {args.out}")
    return 0


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "report": cmd_report, "view": cmd_view, "export": cmd_export,
            "plan": cmd_plan, "calibrate": cmd_calibrate, "agree": cmd_agree, "list": cmd_list, "schema": cmd_schema}


def _one_line(text: str) -> str:
    """``text`` with control characters escaped (a key such as "\x1e" would otherwise break the line)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``evalkit`` console script."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a malformed argument (2, its one line already printed)
        return int(exit_.code or 0)
    if isinstance(getattr(args, "config", None), Path):
        args.config = resolve_config_path(args.config)  # an example config's name -> its shipped file
    logging.basicConfig(level=logging.INFO if not getattr(args, "quiet", False) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except EvalkitError as err:
        if args.debug:
            raise
        print(f"error: {_one_line(str(err))}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished trials are saved; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
