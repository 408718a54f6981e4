"""Eval configs: every bad config is one line naming file, field, value and fix; good ones load and hash stably."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evalkit.config.schema import EvalConfig, ModelConfig, config_hash, load_config
from evalkit.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

GOOD = {
    "models": [{"name": "smollm2-135m-instruct", "dtype": "float32", "device": "cpu"}],
    "tasks": ["passkey"],
    "context_lengths": [256, 512],
    "depths": [0.0, 0.5, 1.0],
    "samples": 2,
    "output_dir": "reports/runs/test",
}


def write(tmp_path: Path, data: object, name: str = "grid.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def changed(**fields: object) -> dict:
    return {**GOOD, **fields}


def without(key: str) -> dict:
    return {k: v for k, v in GOOD.items() if k != key}


# (id, file content, overrides, substrings every message must contain)
BAD = [
    ("unknown top-level key", {**GOOD, "dephts": [0.5]}, (),
     ["grid.yaml: dephts: ", "unknown key 'dephts'", "did you mean 'depths'?", "allowed keys: models, tasks"]),
    ("unknown model key", changed(models=[{"name": "m", "dtpye": "float16"}]), (),
     ["grid.yaml: models[0].dtpye: ", "unknown key 'dtpye'", "did you mean 'dtype'?", "max_new_tokens"]),
    ("bad dtype", changed(models=[{"name": "m", "dtype": "bf17"}]), (),
     ["grid.yaml: models[0].dtype: 'bf17' is not one of auto, float32, float16, bfloat16; use one of these"]),
    ("depth above 1", changed(depths=[0.0, 1.5]), (),
     ["grid.yaml: depths[1]: 1.5 is not within [0, 1]; use a value from 0 to 1"]),
    ("negative length", changed(context_lengths=[256, -4]), (),
     ["grid.yaml: context_lengths[1]: -4 is below the minimum 32; use a value >= 32"]),
    ("window fraction above 1", changed(context_unit="window", context_lengths=[0.5, 1.2]), (),
     ["grid.yaml: context_lengths[1]: 1.2 is not a fraction of the window in (0, 1]; use a value above 0 and at "
      "most 1"]),
    ("window fraction of 0", changed(context_unit="window", context_lengths=[0, 0.5]), (),
     ["grid.yaml: context_lengths[0]: 0 is not a fraction of the window in (0, 1]"]),
    ("token count as a fraction", changed(context_lengths=[256, 0.5]), (),
     ["grid.yaml: context_lengths[1]: 0.5 is not a whole number of tokens", "set context_unit: window"]),
    ("length not a number", changed(context_lengths=["4k"]), (),
     ["grid.yaml: context_lengths[0]: '4k' is not a number; write a whole number of tokens"]),
    ("unknown context unit", changed(context_unit="percent"), (),
     ["grid.yaml: context_unit: 'percent' is not one of tokens, window; use one of these"]),
    ("context window too small", changed(models=[{"name": "m", "context_window": 16}]), (),
     ["grid.yaml: models[0].context_window: 16 is below the minimum 32"]),
    ("empty depths", changed(depths=[]), (), ["grid.yaml: depths: [] is empty; give at least 1 item"]),
    ("duplicate depths", changed(depths=[0.0, 0.5, 0.5]), (),
     ["grid.yaml: depths: 0.5 appears twice (depths[1] and depths[2]); list it once"]),
    ("duplicate depths written differently", changed(depths=[1, 1.0]), (), ["depths[0] and depths[1]"]),
    ("duplicate model", changed(models=["m", {"name": "m", "dtype": "float16"}]), (),
     ["grid.yaml: models: 'm' appears twice (models[0] and models[1])"]),
    ("samples zero", changed(samples=0), (), ["grid.yaml: samples: 0 is below the minimum 1; use a value >= 1"]),
    ("grid too large", changed(samples=10**7), (),
     ["grid.yaml: samples: 10000000 samples make a grid of 60,000,000 trials, above evalkit's limit of 10,000,000"]),
    ("wrong type", changed(samples="many"), (), ["grid.yaml: samples: 'many' is not a whole number; write an integer"]),
    ("bool is not a number", changed(depths=[True]), (), ["grid.yaml: depths[0]: true is not a number"]),
    ("scalar instead of list", changed(context_lengths=512), (),
     ["grid.yaml: context_lengths: 512 is not a list; write a YAML list"]),
    ("missing key", without("output_dir"), (), ["grid.yaml: output_dir: required key is missing; add `output_dir:`"]),
    ("model name missing", changed(models=[{"dtype": "float32"}]), (), ["grid.yaml: models[0].name: required key"]),
    ("several errors", changed(samples=0, seed="x", depths=[2.0]), (), ["grid.yaml: depths[0]: ", "(and 2 more)"]),
    ("malformed YAML", "models: [a\ntasks: [passkey]\n", (),
     ["grid.yaml: line ", "invalid YAML", "fix the YAML syntax"]),
    ("top-level list", "- models\n- tasks\n", (),
     ["grid.yaml: top level: expected a mapping of keys (models, tasks", "got a list"]),
    ("empty file", "", (), ["grid.yaml: top level: ", "got an empty file"]),
    ("override without =", GOOD, ("samples",), ["grid.yaml: --set 'samples': expected KEY=VALUE", "--set samples=3"]),
    ("override bad YAML", GOOD, ("depths=[0,",), ["grid.yaml: --set 'depths=[0,': ", "invalid YAML"]),
    ("override index out of range", GOOD, ("models.2.dtype=float16",),
     ["grid.yaml: --set 'models.2.dtype=float16': '2' is not an index of models", "use 0 to 0"]),
    ("override value out of range", GOOD, ("depths=[0, 1.7]",),
     ["grid.yaml: depths[1] (from --set): 1.7 is not within [0, 1]"]),
    ("override into a scalar", GOOD, ("samples.x=1",), ["grid.yaml: --set 'samples.x=1': samples is 2, not a mapping"]),
    ("served without its block", changed(models=[{"name": "m", "backend": "served"}]), (),
     ["grid.yaml: models[0].served: backend: served needs a served: block; add served: {base_url: http://...}"]),
    ("served block on transformers", changed(models=[{"name": "m", "served": {"base_url": "http://h:1"}}]), (),
     ["grid.yaml: models[0].served: is set but backend is 'transformers'; set backend: served or remove it"]),
    ("served url not http", changed(models=[{"name": "m", "backend": "served", "served": {"base_url": "h:1"}}]), (),
     ["grid.yaml: models[0].served.base_url: 'h:1' is not an http(s) URL; write e.g. http://127.0.0.1:8080"]),
    ("served url with a password", changed(models=[{"name": "m", "backend": "served",
                                                    "served": {"base_url": "http://user:S3CRETPW@127.0.0.1:9"}}]), (),
     ["grid.yaml: models[0].served.base_url: 'http://***@127.0.0.1:9' holds a user name or password",
      "name it in served.api_key_env"]),
    ("served url with a password via --set", GOOD, ("models.0.backend=served",
                                                    "models.0.served={base_url: 'http://u:S3CRETPW@h:1'}"),
     ["grid.yaml: models[0].served.base_url (from --set): 'http://***@h:1' holds a user name or password"]),
    ("served url not http with a password", changed(models=[{"name": "m", "backend": "served",
                                                             "served": {"base_url": "ftp://u:S3CRETPW@h:1"}}]), (),
     ["grid.yaml: models[0].served.base_url: 'ftp://***@h:1' is not an http(s) URL"]),
    ("random init on a served backend", changed(models=[{"name": "m", "backend": "served", "init": "random",
                                                        "served": {"base_url": "http://h:1"}}]), (),
     ["grid.yaml: models[0].init: random builds the weights in this process", "use backend: transformers"]),
    ("init_seed without random init", changed(models=[{"name": "m", "init_seed": 3}]), (),
     ["grid.yaml: models[0].init_seed: applies to init: random only", "set init: random or remove init_seed"]),
    ("duplicate random control", changed(models=["m", {"name": "m", "init": "random"},
                                                 {"name": "m", "init": "random", "dtype": "float16"}]), (),
     ["grid.yaml: models: 'm (random init, seed 0)' appears twice (models[1] and models[2]); list it once"]),
    ("served unknown key", changed(models=[{"name": "m", "backend": "served",
                                            "served": {"base_url": "http://h:1", "api_key": "sk-x"}}]), (),
     ["grid.yaml: models[0].served.api_key: "]),
]


@pytest.mark.parametrize("content, overrides, parts", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_config_is_one_line_with_file_field_value_and_fix(tmp_path, content, overrides, parts):
    path = write(tmp_path, content)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert message.startswith(str(path) + ": ")
    assert "\n" not in message
    assert "S3CRETPW" not in message  # a password in a URL is never echoed
    for part in parts:
        assert part in message


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found; check the path"):
        load_config(tmp_path / "nope.yaml")


def test_good_config_loads_with_defaults(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.models == [ModelConfig(name="smollm2-135m-instruct", dtype="float32", device="cpu")]
    assert (cfg.samples, cfg.seed, cfg.save_prompts, cfg.length_tolerance_tokens, cfg.task_dirs) == (2, 0, False, 0, [])
    assert cfg.depths == [0.0, 0.5, 1.0] and all(isinstance(d, float) for d in cfg.depths)
    assert cfg.source_path == tmp_path / "grid.yaml"


def test_string_shorthand_for_models(tmp_path):
    cfg = load_config(write(tmp_path, changed(models=["a-model", {"name": "b", "dtype": "bfloat16"}])))
    assert [(m.name, m.dtype) for m in cfg.models] == [("a-model", "auto"), ("b", "bfloat16")]


def test_overrides_apply_dotted_and_indexed_keys(tmp_path):
    path = write(tmp_path, changed(models=["m1", "m2"]))
    cfg = load_config(path, ["depths=[0,0.25]", "samples=5", "models.1.dtype=float16", "models[0].max_new_tokens=3",
                             "output_dir=elsewhere/run", "seed=7"])
    assert cfg.depths == [0.0, 0.25] and cfg.samples == 5 and cfg.seed == 7 and cfg.output_dir == "elsewhere/run"
    assert (cfg.models[0].name, cfg.models[0].max_new_tokens, cfg.models[0].dtype) == ("m1", 3, "auto")
    assert (cfg.models[1].name, cfg.models[1].dtype) == ("m2", "float16")
    assert yaml.safe_load(path.read_text())["samples"] == 2  # the file itself is untouched


def test_task_dirs_are_relative_to_the_config_file(tmp_path):
    path = write(tmp_path, changed(task_dirs=["my_tasks", "/abs/tasks"]), name="sub.yaml")
    assert load_config(path).task_search_dirs() == (tmp_path / "my_tasks", Path("/abs/tasks"))


def test_a_task_path_is_relative_to_the_config_file_not_the_cwd(tmp_path, tiny_model_dir, monkeypatch, capsys):
    from evalkit.cli import main

    folder = tmp_path / "project" / "configs"
    (folder / "tasks").mkdir(parents=True)
    task = yaml.safe_load((REPO / "tasks" / "passkey.yaml").read_text())
    (folder / "tasks" / "mine.yaml").write_text(yaml.safe_dump({**task, "name": "mine"}))
    model = {"name": str(tiny_model_dir), "dtype": "float32", "device": "cpu", "max_new_tokens": 8}
    path = write(folder, changed(models=[model], tasks=["tasks/mine.yaml", "passkey"], context_lengths=[128]))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # tasks/mine.yaml does not exist from here
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    assert "(1 models x 2 tasks, " in capsys.readouterr().out  # the built-in name still resolves too
    assert main(["validate", str(path), "--set", "tasks=[tasks/none.yaml]"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {path}: tasks[0]: 'tasks/none.yaml' ({folder / 'tasks' / 'none.yaml'}): task file not "
                   f"found; relative task paths start at the config's folder ({folder}): fix the path")


def test_shipped_configs_load():
    quick = load_config(REPO / "configs" / "quickstart.yaml")
    assert quick.models[0].name == "smollm2-135m-instruct" and quick.models[0].max_new_tokens == 12
    assert (quick.context_lengths, quick.samples) == ([256, 512, 1024, 2048], 2)
    assert quick.depths == [0.0, 0.25, 0.5, 0.75, 1.0] and quick.output_dir == "reports/runs/quickstart"
    tiny = load_config(REPO / "configs" / "tiny.yaml")
    assert (tiny.context_lengths, tiny.depths, tiny.samples) == ([128, 256], [0.0, 0.5, 1.0], 1)


def test_hash_is_stable_ignores_location_and_changes_with_results(tmp_path):
    base = config_hash(load_config(write(tmp_path, GOOD)))
    assert len(base) == 16 and int(base, 16) >= 0
    assert config_hash(load_config(write(tmp_path, GOOD, name="copy.yaml"))) == base
    assert config_hash(EvalConfig.model_validate(GOOD)) == base
    moved = changed(output_dir="/somewhere/else", task_dirs=["extra"])
    assert config_hash(EvalConfig.model_validate(moved)) == base
    variants = [changed(seed=1), changed(samples=3), changed(depths=[0.0, 0.5]), changed(tasks=["fact"]),
                changed(models=[{**GOOD["models"][0], "dtype": "bfloat16"}]), changed(length_tolerance_tokens=2),
                changed(context_lengths=[256, 1024])]
    hashes = {config_hash(EvalConfig.model_validate(v)) for v in variants}
    assert base not in hashes and len(hashes) == len(variants)


# the attention section: (id, attention mapping, substrings of the one-line message)
BAD_ATTENTION = [
    ("unknown key", {"capture": True, "bin": 10}, ["grid.yaml: attention.bin: unknown key 'bin'", "did you mean 'bins'?"]),
    ("capture not a bool", {"capture": "yes"}, ["grid.yaml: attention.capture: 'yes' is not true or false"]),
    ("zero bins", {"capture": True, "bins": 0}, ["grid.yaml: attention.bins: 0 is not within [1, 512]"]),
    ("negative sink", {"sink_tokens": -1}, ["grid.yaml: attention.sink_tokens: -1 is not within [0, 64]"]),
    ("decode steps as text", {"decode_steps": "4"}, ["grid.yaml: attention.decode_steps: '4' is not a whole number"]),
    ("unknown kernel", {"capture": True, "inner": "flash"},
     ["grid.yaml: attention.inner: 'flash' is not one of auto, sdpa, eager, flash_attention_2"]),
    ("decode steps past the answer", {"capture": True, "decode_steps": 16},
     ["grid.yaml: attention: decode_steps 16 needs max_new_tokens >= 17, but models[0] (smollm2-135m-instruct) "
      "has 16; lower attention.decode_steps or raise models[0].max_new_tokens"]),
    ("not a mapping", [True], ["grid.yaml: attention: [True] is not a mapping"]),
]


@pytest.mark.parametrize("attention, parts", [c[1:] for c in BAD_ATTENTION], ids=[c[0] for c in BAD_ATTENTION])
def test_bad_attention_section_is_one_line_with_field_and_fix(tmp_path, attention, parts):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, changed(attention=attention)))
    assert "\n" not in str(info.value)
    for part in parts:
        assert part in str(info.value)


def test_attention_defaults_and_hash(tmp_path):
    from evalkit.config.schema import AttentionConfig

    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.attention == AttentionConfig(capture=False, decode_steps=0, bins=20, sink_tokens=1, inner="sdpa")
    base = config_hash(cfg)
    # settings without capture change no result, so they do not change the hash; with capture each one does
    assert config_hash(EvalConfig.model_validate(changed(attention={"bins": 5}))) == base
    on = [changed(attention={"capture": True, **extra}) for extra in
          ({}, {"bins": 5}, {"sink_tokens": 0}, {"decode_steps": 2}, {"inner": "eager"})]
    hashes = {config_hash(EvalConfig.model_validate(v)) for v in on}
    assert base not in hashes and len(hashes) == len(on)


def test_backend_field_at_its_default_keeps_the_hash_of_older_configs() -> None:
    """``models[*].backend`` came after runs existed: at its default it must not move ``config_hash``
    (the literal is configs/quickstart.yaml's hash before the field was added), so old run dirs resume."""
    raw = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    quick = EvalConfig.model_validate(raw)
    assert quick.models[0].backend == "transformers"
    assert config_hash(quick) == "b0b8332f6d02b9e5"
    spelled = {**raw, "models": [{**raw["models"][0], "backend": "transformers"}]}
    assert config_hash(EvalConfig.model_validate(spelled)) == "b0b8332f6d02b9e5"
    other = {**raw, "models": [{**raw["models"][0], "backend": "served", "served": {"base_url": "http://h:1"}}]}
    assert config_hash(EvalConfig.model_validate(other)) != "b0b8332f6d02b9e5"


def test_init_at_its_default_keeps_the_hash_of_older_configs() -> None:
    """``models[*].init`` and ``init_seed`` came after runs existed: a config without them (or with ``init:
    pretrained`` spelled out) hashes as before (the literal: configs/quickstart.yaml's hash before they existed), so
    old run dirs resume; a random-init control, or another seed of it, is another run."""
    raw = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    entry = raw["models"][0]
    def hashed(*entries: dict) -> str:
        return config_hash(EvalConfig.model_validate({**raw, "models": list(entries)}))
    assert hashed(entry) == hashed({**entry, "init": "pretrained"}) == "b0b8332f6d02b9e5"
    control = {**entry, "init": "random"}
    assert len({hashed(entry), hashed(control), hashed({**control, "init_seed": 1}), hashed(entry, control)}) == 4


def test_a_model_and_its_random_control_are_two_entries_with_their_own_labels() -> None:
    cfg = EvalConfig.model_validate(changed(models=["m", {"name": "m", "init": "random"},
                                                    {"name": "m", "init": "random", "init_seed": 7}]))
    assert [m.label for m in cfg.models] == ["m", "m (random init, seed 0)", "m (random init, seed 7)"]
    assert [m.name for m in cfg.models] == ["m", "m", "m"]  # where the config and tokenizer come from


def test_where_a_served_model_runs_is_not_in_the_hash() -> None:
    """Address, key variable, concurrency, timeout and retries change where and how fast, not what is measured."""
    raw = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    def served(**block):
        entry = {**raw["models"][0], "backend": "served", "served": {"base_url": "http://a:1", **block}}
        return config_hash(EvalConfig.model_validate({**raw, "models": [entry]}))
    base = served()
    assert served(base_url="http://b:2", api_key_env="K", max_concurrency=9, timeout_s=5.0, retries=0) == base
    assert base != "b0b8332f6d02b9e5"  # a served run is not the transformers run of the same grid


def test_a_saved_model_entry_reads_back():
    # a run header keeps each entry dumped in full (init_seed: 0 included); reading it back must not refuse it
    from evalkit.config.entries import ModelConfig

    for entry in ({"name": "m"}, {"name": "m", "init": "random", "init_seed": 4}):
        model = ModelConfig.model_validate(entry)
        assert ModelConfig.model_validate(model.model_dump(mode="json")) == model
