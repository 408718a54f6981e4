"""The search's trials: each setting it tries is an ordinary run directory, so a search resumes like a run.

A step at one setting runs the config narrowed to one model, one task, the setting (one context length, or one
number of look-alikes), the search depths and the baseline arm, without controls or attention capture. Its
``samples`` is the most the budget could ever spend on one setting, and a step runs only the first samples it
needs (``--limit`` in plan order, which is sample-major here), so more samples at the same setting extend the same
run directory instead of starting another. Rerunning a search reads the finished trials back and takes the same
path: every decision depends only on records.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evalkit.config.entries import AttentionConfig, ModelConfig
from evalkit.config.mitigations import NoMitigation
from evalkit.config.schema import EvalConfig
from evalkit.errors import ConfigError
from evalkit.run.runner import run_eval
from evalkit.store.format import records_files, read_records


def path_part(text: str) -> str:
    """``text`` as one folder name (a Hub id's slash and other odd characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "_"


@dataclass(frozen=True)
class StepGrid:
    """What every step of one model x task search shares: the narrowed config's fixed parts."""

    config: EvalConfig  # the user's config
    config_path: Path
    model: ModelConfig
    task: str  # the config's ``tasks`` entry
    depths: tuple[float, ...]
    samples_cap: int  # the narrowed config's ``samples``: the most any one setting can get
    folder: Path  # this model x task's step directories live here


def check_searchable(config: EvalConfig) -> None:
    """Refuse what the search cannot narrow to one grid cell per setting, naming the field and the fix."""
    where = config.source_label
    search = config.search
    if search is None:
        raise ConfigError(f"{where}: search: missing; add a search block, e.g. search: {{axis: context_length, "
                          "low: 256, high: 8192}} (see docs/calibrate.md)")
    if len(config.layout.layouts()) > 1:
        raise ConfigError(f"{where}: layout: the search runs one layout and this grid has "
                          f"{len(config.layout.layouts())}; give each layout axis one value while calibrating")
    if search.axis == "distractor_count" and len(config.context_lengths) > 1:
        raise ConfigError(f"{where}: context_lengths: a distractor_count search runs at one context length and "
                          f"this config lists {len(config.context_lengths)}; list one")
    step = search.step_trials(config.depths)
    if step > search.budget:
        raise ConfigError(f"{where}: search.budget: {search.budget} trials cannot pay for one step "
                          f"({search.samples_per_step} samples x {step // search.samples_per_step} depths = {step}); "
                          "raise budget or lower samples_per_step")


def step_config(grid: StepGrid, setting: int) -> EvalConfig:
    """The config of one step: the user's config narrowed to ``grid``'s model, task and depths at ``setting``."""
    search = grid.config.search
    assert search is not None  # check_searchable ran
    update = dict(
        models=[grid.model], tasks=[grid.task], depths=list(grid.depths), samples=grid.samples_cap, controls=[],
        mitigations=[NoMitigation()], attention=AttentionConfig(), search=None,
        output_dir=str(grid.folder / f"{search.axis}-{setting}"),
    )
    if search.axis == "context_length":  # a setting is tokens, whatever unit the grid's lengths are in
        update.update(context_lengths=[setting], context_unit="tokens")
    else:
        update["layout"] = grid.config.layout.model_copy(update={"distractor_count": [setting]})
    return grid.config.model_copy(update=update)  # keeps the source path: relative task paths still resolve


@dataclass(frozen=True)
class StepRunner:
    """``Evaluate`` for ``run_search``: runs (or reads back) the first ``samples`` samples at a setting."""

    grid: StepGrid

    def __call__(self, setting: int, samples: int) -> Sequence[tuple[int, int]]:
        config = step_config(self.grid, setting)
        run_eval(config, self.grid.config_path, limit=samples * len(self.grid.depths), quiet=True,
                 write_report=False)
        return depth_successes(Path(config.output_dir), self.grid.depths, samples)


def depth_successes(run_dir: Path, depths: Sequence[float], samples: int) -> list[tuple[int, int]]:
    """(correct, finished) at each depth over samples below ``samples``; skipped trials do not count."""
    counts = {depth: [0, 0] for depth in depths}
    for path in records_files(run_dir):
        for _, record in read_records(path).records:
            if record.status != "ok" or record.control or record.sample >= samples or math.isnan(record.depth):
                continue
            for depth, cell in counts.items():
                if math.isclose(record.depth, depth):
                    cell[0] += int(record.correct)
                    cell[1] += 1
    return [(correct, finished) for correct, finished in counts.values()]
