"""Plan: the trial grid, its order, stable ids and the paired per-sample seeds."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from evalkit.config.schema import EvalConfig, config_hash, load_config
from evalkit.errors import ConfigError, TaskError
from evalkit.run.plan import expand, limit_trials, task_name_of, trial_seed
from evalkit.tasks import TaskSpec, load_task
from evalkit.tasks.needles import instantiate_needle

REPO = Path(__file__).resolve().parents[2]
PASSKEY = yaml.safe_load((REPO / "tasks" / "passkey.yaml").read_text())

GRID = {
    "models": ["model-a", {"name": "model-b", "revision": "v1"}],
    "tasks": ["passkey", "fact"],
    "context_lengths": [128, 256, 512],
    "depths": [0.0, 0.5, 1.0],
    "samples": 2,
    "seed": 3,
    "output_dir": "out",
}


def config(**changes: object) -> EvalConfig:
    return EvalConfig.model_validate({**GRID, **changes})


@pytest.fixture(scope="module")
def tasks() -> dict[str, TaskSpec]:
    return {"passkey": load_task("passkey"), "fact": load_task("fact")}


def ids(trials) -> list[str]:
    return [t.trial_id for t in trials]


def test_count_is_the_product_of_the_axes_and_every_cell_appears_once(tasks):
    trials = expand(config(), tasks)
    assert len(trials) == 2 * 2 * 3 * 3 * 2
    cells = {(t.model, t.task, t.context_length, t.depth, t.sample) for t in trials}
    assert cells == set(itertools.product(["model-a", "model-b"], ["passkey", "fact"], [128, 256, 512],
                                          [0.0, 0.5, 1.0], [0, 1]))
    assert len(set(ids(trials))) == len(trials)
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids(trials))


def test_order_is_model_task_sample_length_depth(tasks):
    trials = expand(config(), tasks)
    keys = [(t.model, t.task, t.sample, t.context_length, t.depth) for t in trials]
    model_rank = {"model-a": 0, "model-b": 1}
    task_rank = {"passkey": 0, "fact": 1}
    assert keys == sorted(keys, key=lambda k: (model_rank[k[0]], task_rank[k[1]], k[2], k[3], k[4]))
    assert keys[:4] == [("model-a", "passkey", 0, 128, 0.0), ("model-a", "passkey", 0, 128, 0.5),
                        ("model-a", "passkey", 0, 128, 1.0), ("model-a", "passkey", 0, 256, 0.0)]


def test_ids_are_stable_across_calls_and_config_objects(tasks):
    first = ids(expand(config(), tasks))
    assert first == ids(expand(config(), {"passkey": load_task("passkey"), "fact": load_task("fact")}))
    # output location and extra search folders do not change what a trial is
    assert first == ids(expand(config(output_dir="elsewhere", task_dirs=["x"]), tasks))


def by_cell(trials) -> dict[tuple, str]:
    return {(t.model, t.task, t.context_length, t.depth, t.sample): t.trial_id for t in trials}


def test_ids_change_with_what_defines_a_trial(tasks):
    base = by_cell(expand(config(), tasks))
    edited = {**tasks, "passkey": TaskSpec.model_validate({**PASSKEY, "question": "Which number?"})}
    changed_task = by_cell(expand(config(), edited))
    assert all((changed_task[c] != i) == (c[1] == "passkey") for c, i in base.items())
    assert set(by_cell(expand(config(seed=4), tasks)).values()).isdisjoint(base.values())
    revised = by_cell(expand(config(), tasks, {"model-a": "abc123"}))
    assert all((revised[c] != i) == (c[0] == "model-a") for c, i in base.items())
    # a new length or depth adds trials without renaming the existing ones
    wider = by_cell(expand(config(context_lengths=[128, 256, 512, 1024], depths=[0.0, 0.25, 0.5, 1.0]), tasks))
    assert all(wider[c] == i for c, i in base.items())
    assert len(set(wider.values())) == len(wider)


def test_a_random_init_control_plans_its_own_trials_beside_its_model(tasks):
    """The control is keyed by its label: its own trial ids and ``Trial.model``, same seeds (paired), and the
    trained model's ids as without it (old runs resume); its revision is looked up by label too."""
    models = ["model-a", {"name": "model-a", "init": "random"}]
    plan = expand(config(models=models), tasks, {"model-a": "r", "model-a (random init, seed 0)": "r"})
    trained = [t for t in plan if t.model == "model-a"]
    control = [t for t in plan if t.model == "model-a (random init, seed 0)"]
    assert len(trained) == len(control) == len(plan) // 2
    assert set(ids(trained)).isdisjoint(ids(control)) and len(set(ids(control))) == len(control)
    assert [t.seed for t in trained] == [t.seed for t in control]
    assert ids(trained) == ids(expand(config(models=["model-a"]), tasks, {"model-a": "r"}))
    reseeded = expand(config(models=[{"name": "model-a", "init": "random", "init_seed": 1}]), tasks)
    assert set(ids(reseeded)).isdisjoint(ids(expand(config(models=[models[1]]), tasks)))


def test_revision_comes_from_the_resolved_map_then_the_config(tasks):
    plain = by_cell(expand(config(), tasks))
    assert plain == by_cell(expand(config(), tasks, {"model-b": "v1"}))  # same as the configured revision
    assert plain != by_cell(expand(config(), tasks, {"model-b": "v2"}))


def test_one_sample_shares_its_seed_across_lengths_and_depths(tasks):
    trials = expand(config(), tasks)
    seeds: dict[tuple, set[int]] = {}
    for t in trials:
        seeds.setdefault((t.model, t.task, t.sample), set()).add(t.seed)
    assert all(len(s) == 1 for s in seeds.values())
    assert seeds[("model-a", "passkey", 0)] == seeds[("model-b", "passkey", 0)]  # models see the same prompts
    distinct = {next(iter(s)) for k, s in seeds.items() if k[0] == "model-a"}
    assert len(distinct) == 4  # 2 tasks x 2 samples
    assert trial_seed(3, "passkey", 0) == next(iter(seeds[("model-a", "passkey", 0)]))
    assert trial_seed(4, "passkey", 0) != trial_seed(3, "passkey", 0)
    assert 0 <= trial_seed(3, "passkey", 1) < 2**63


def _needle(trial, tasks) -> str:
    return instantiate_needle(tasks[trial.task], trial.seed).needle


def test_values_per_trial_gives_each_depth_of_a_sample_its_own_needle(tasks):
    # values: per_sample (the default): two depths of one sample carry the same needle value
    shared = [t for t in expand(config(), tasks) if (t.model, t.task, t.sample, t.context_length) ==
              ("model-a", "passkey", 0, 128)]
    assert len(shared) == 3 and len({_needle(t, tasks) for t in shared}) == 1
    # values: per_trial: each depth and length draws its own, deterministically (a resumed run plans the same)
    own = [t for t in expand(config(values="per_trial"), tasks) if (t.model, t.task, t.sample) ==
           ("model-a", "passkey", 0)]
    assert len({t.seed for t in own}) == len(own) == 9
    assert len({_needle(t, tasks) for t in own[:3]}) == 3
    again = [t for t in expand(config(values="per_trial"), tasks) if (t.model, t.task, t.sample) ==
             ("model-a", "passkey", 0)]
    assert [(t.trial_id, t.seed) for t in again] == [(t.trial_id, t.seed) for t in own]
    # models and arms still share a cell's value (paired), and its ids are the per_sample ones
    other = {(t.context_length, t.depth): t.seed for t in expand(config(values="per_trial"), tasks)
             if (t.model, t.task, t.sample) == ("model-b", "passkey", 0)}
    assert all(other[(t.context_length, t.depth)] == t.seed for t in own)


def test_values_enters_the_config_hash_only_off_its_default(tasks):
    # pinned from before the option existed: runs of the default keep their config hash, trial ids and seeds
    assert config_hash(config()) == config_hash(config(values="per_sample")) == "e275591b7718c21e"
    trials = expand(config(), tasks)
    assert (trials[0].trial_id, trials[0].seed, trials[-1].trial_id) == (
        "eafcc7620e2590a6", 893695574271752067, "786778c96f329470")
    assert config_hash(config(values="per_trial")) != config_hash(config())
    with pytest.raises(ValueError, match="per_sample"):
        config(values="per_cell")


def test_values_per_trial_refuses_a_documents_task():
    spec = load_task("lost_in_the_middle_qa")  # its question is picked per sample
    cfg = config(tasks=[spec.name], values="per_trial")
    with pytest.raises(ConfigError, match="values: per_trial.*documents task.*per_sample"):
        expand(cfg, {spec.name: spec})


def test_limit_takes_the_first_trials_in_plan_order(tasks):
    trials = expand(config(), tasks)
    assert limit_trials(trials, 5) == trials[:5]
    assert limit_trials(trials, None) == trials
    assert limit_trials(trials, 10_000) == trials
    with pytest.raises(ConfigError, match="--limit: -1"):
        limit_trials(trials, -1)


def test_tasks_may_be_keyed_by_entry_or_name_and_must_all_be_loaded(tmp_path, tasks):
    path = tmp_path / "fact.yaml"
    path.write_text((REPO / "tasks" / "fact.yaml").read_text())
    assert task_name_of(str(path)) == "fact"
    cfg = config(tasks=["passkey", str(path)])
    by_name = expand(cfg, {"passkey": tasks["passkey"], "fact": tasks["fact"]})
    by_entry = expand(cfg, {"passkey": tasks["passkey"], str(path): tasks["fact"]})
    assert ids(by_name) == ids(by_entry) == ids(expand(config(), tasks))
    with pytest.raises(TaskError, match=r"tasks\[1\]: 'fact' was not loaded"):
        expand(config(), {"passkey": tasks["passkey"]})


def test_the_same_task_twice_is_refused(tmp_path, tasks):
    cfg = config(tasks=["fact", str(tmp_path / "fact.yaml")])
    with pytest.raises(ConfigError, match=r"tasks\[1\]: .* is task 'fact' again \(tasks\[0\]\); list each task once"):
        expand(cfg, tasks)


def test_repeated_axis_values_never_reach_the_plan(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**GRID, "depths": [0.5, 0.50]}))
    with pytest.raises(ConfigError, match="appears twice"):
        load_config(path)


def test_quickstart_plan_has_forty_trials():
    cfg = load_config(REPO / "configs" / "quickstart.yaml")
    trials = expand(cfg, {"passkey": load_task("passkey")})
    assert len(trials) == 4 * 5 * 2 and {t.model for t in trials} == {"smollm2-135m-instruct"}


def test_validate_counts_the_plan_without_building_it(tmp_path, tasks):
    """D12: `count_trials` (what `validate` prints) equals the planned trials, controls and layouts included."""
    from evalkit.run.plan import count_trials

    cfg = EvalConfig.model_validate({
        "models": ["m1", "m2"], "tasks": ["passkey"], "context_lengths": [256, 512], "depths": [0.0, 0.5, 1.0],
        "samples": 3, "output_dir": str(tmp_path), "controls": ["closed_book", "oracle", "dummy_needle"],
        "layout": {"question_position": ["after", "both"]},
    })
    assert count_trials(cfg, tasks) == len(expand(cfg, tasks)) == 2 * 3 * 2 * (6 + 2 + 1 + 6)
