"""The ``mitigations:`` axis (evalkit/config/mitigations.py): arms and their options, the hash, the trial ids,
and every arm on exactly the baseline's trials."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import yaml

from evalkit.config.schema import EvalConfig, config_hash, load_config
from evalkit.errors import ConfigError
from evalkit.run.plan import count_trials, expand
from evalkit.tasks import load_task

REPO = Path(__file__).resolve().parents[2]
ARMS = ["none", "reorder_by_relevance", {"arm": "mask_heads", "heads": [[0, 1]]},
        {"arm": "mask_heads", "name": "random2", "random_k": 2, "seed": 1}]
GRID = {"models": ["model-a", "model-b"], "tasks": ["passkey"], "context_lengths": [128, 256],
        "depths": [0.0, 0.5, 1.0], "samples": 2, "output_dir": "out", "controls": ["closed_book", "oracle"]}


def _key(trial) -> tuple:
    depth = None if math.isnan(trial.depth) else trial.depth
    return trial.model, trial.task, trial.sample, trial.context_length, depth, trial.control, trial.layout


def test_the_default_axis_keeps_the_quickstart_hash_and_an_explicit_baseline_hashes_alike() -> None:
    raw = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    assert config_hash(EvalConfig.model_validate(raw)) == "b0b8332f6d02b9e5"
    assert config_hash(EvalConfig.model_validate({**raw, "mitigations": ["none"]})) == "b0b8332f6d02b9e5"
    assert config_hash(EvalConfig.model_validate({**raw, "mitigations": ["none", "reorder_by_relevance"]})) \
        != "b0b8332f6d02b9e5"


def test_every_arm_runs_on_exactly_the_baselines_trials_and_pairs_one_to_one() -> None:
    tasks = {"passkey": load_task("passkey")}
    plain = expand(EvalConfig.model_validate(GRID), tasks)
    cfg = EvalConfig.model_validate({**GRID, "mitigations": ARMS})
    trials = expand(cfg, tasks)
    assert len(trials) == 4 * len(plain) == count_trials(cfg, tasks)
    by_arm = {arm: [t for t in trials if t.mitigation == arm]
              for arm in ("none", "reorder_by_relevance", "mask_heads", "random2")}
    baseline = Counter(_key(t) for t in by_arm["none"])
    assert max(baseline.values()) == 1  # the pairing key identifies a baseline trial
    for arm, arm_trials in by_arm.items():
        assert Counter(_key(t) for t in arm_trials) == baseline, arm  # the same cells, each exactly once
    # the baseline keeps the ids of a config without the axis; every arm's ids are its own
    assert [t.trial_id for t in by_arm["none"]] == [t.trial_id for t in plain]
    assert len({t.trial_id for t in trials}) == len(trials)
    # an arm's seed is the baseline's: the same needle value and haystack stream
    pairs = {_key(t): t.seed for t in by_arm["none"]}
    assert all(pairs[_key(t)] == t.seed for t in trials)


def test_an_arms_options_enter_its_trial_ids_but_its_name_does_not() -> None:
    tasks = {"passkey": load_task("passkey")}

    def ids(arm) -> list[str]:
        trials = expand(EvalConfig.model_validate({**GRID, "mitigations": ["none", arm]}), tasks)
        return [t.trial_id for t in trials if t.mitigation != "none"]

    assert ids({"arm": "mask_heads", "random_k": 2, "seed": 1}) != ids({"arm": "mask_heads", "random_k": 2, "seed": 2})
    assert ids({"arm": "mask_heads", "random_k": 2}) == ids({"arm": "mask_heads", "random_k": 2, "name": "r"})


@pytest.mark.parametrize(("arms", "words"), [
    (["nonsense"], ("mitigations[0]", "none", "reorder_by_relevance", "mask_heads")),
    ([{"arm": "mask_heads"}], ("mitigations[0]", "heads", "random_k")),
    ([{"arm": "mask_heads", "heads": [[0, 1]], "random_k": 2}], ("exactly one",)),
    ([{"arm": "mask_heads", "from_run": "runs/x"}], ("top_k",)),
    ([{"arm": "mask_heads", "top_k": 2}], ("mitigations[0]", "top_k without from_run", "capture: true")),
    ([{"arm": "mask_heads", "heads": [[0]]}], ("mitigations[0]",)),
    (["none", "none"], ("baseline", "once")),
    (["reorder_by_relevance", {"arm": "mask_heads", "random_k": 1, "name": "reorder_by_relevance"}],
     ("both named", "distinct name")),
    ([{"arm": "reorder_by_relevance", "strength": 2}], ("strength",)),
    ([], ("mitigations",)),
])
def test_bad_arms_are_one_line_errors_naming_the_field(tmp_path, arms, words) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**GRID, "mitigations": arms}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(str(path)) and "\n" not in message.strip()
    for word in words:
        assert word in message, (word, message)


def test_top_k_from_this_run_needs_the_baseline_listed_before_it(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    top = {"arm": "mask_heads", "name": "top2", "top_k": 2}
    path.write_text(yaml.safe_dump({**GRID, "attention": {"capture": True}, "mitigations": [top, "none"]}))
    with pytest.raises(ConfigError, match=r"mitigations\[0\].*list - none before this arm"):
        load_config(path)
    path.write_text(yaml.safe_dump({**GRID, "attention": {"capture": True}, "mitigations": ["none", top]}))
    assert load_config(path).arm("top2").from_this_run
