"""Distractors in prompts: placed at their depths, decoded back, paired across counts, kept out of the haystack,
with multi-needle tasks, and written into the record."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
import yaml
from tokenizer_fixtures import CHATML_BOS_TEMPLATE, byte_bpe_tokenizer, generated_corpus

from evalkit.config.schema import EvalConfig
from evalkit.errors import PlacementError
from evalkit.prompt.builder import PromptBuilder
from evalkit.prompt.controls import build_trial_prompt, score_trial
from evalkit.prompt.distractors import distractor_depths
from evalkit.prompt.tokenization import decode_exact
from evalkit.run.plan import expand
from evalkit.run.preflight import PreparedTask
from evalkit.run.trial_record import trial_record
from evalkit.tasks import haystack_for_task, load_task
from evalkit.tasks.needles import distractor_pool
from evalkit.tasks.spec import TaskSpec
from evalkit.types import REGION_CONTEXT_AFTER, REGION_CONTEXT_BEFORE, REGION_NEEDLE, TrialOutput

REPO = Path(__file__).resolve().parents[2]
# the task file's needle, key and distractors over the generated haystack (the file's Wikipedia text is a path
# relative to tasks/; tests/tasks/test_tasks.py loads the file itself)
DISTRACTORS_TASK = {**yaml.safe_load((REPO / "tasks" / "distractors.yaml").read_text()),
                    "haystack": {"source": "generated"}}
LENGTH = 640


@pytest.fixture(scope="module")
def tokenizers(smollm2_tokenizer):
    byte_bpe = byte_bpe_tokenizer(generated_corpus(), bos=True, chat_template=CHATML_BOS_TEMPLATE)
    return {"smollm2": smollm2_tokenizer, "byte_bpe": byte_bpe}


def _task(**distractors) -> PreparedTask:
    spec = TaskSpec.model_validate({**DISTRACTORS_TASK, "distractors": {**DISTRACTORS_TASK["distractors"],
                                                                          **distractors}})
    return PreparedTask(spec, haystack_for_task(spec))


def _config(**fields) -> EvalConfig:
    # a tolerance instead of filler: the haystack is whole sentences of the stream, from its start
    base = dict(models=["m"], tasks=["distractors"], context_lengths=[LENGTH], depths=[0.5], samples=2,
                output_dir="out", length_tolerance_tokens=64)
    return EvalConfig.model_validate({**base, **fields})


def _build(tokenizer, task: PreparedTask, cfg: EvalConfig, control: str = "", **layout):
    trials = [t for t in expand(cfg, {task.spec.name: task.spec}) if t.control == control]
    wanted = [t for t in trials if all(dict(t.layout).get(k, None) == v for k, v in layout.items())]
    builder = PromptBuilder(tokenizer)
    return [(t, build_trial_prompt(builder, task, t, cfg.models[0], cfg)) for t in wanted]


def _planted_spans(built) -> list[tuple[int, int]]:
    prompt = built.prompt
    spans = [prompt.regions[REGION_NEEDLE], *prompt.extra_needle_spans]
    return sorted([(s.token_start, s.token_end) for s in spans] + [(d.token_start, d.token_end)
                                                                     for d in built.distractors])


def _haystack_text(tokenizer, built) -> str:
    """The context outside the needle and every distractor, stretch by stretch."""
    prompt = built.prompt
    cursor, end = prompt.regions[REGION_CONTEXT_BEFORE].token_start, prompt.regions[REGION_CONTEXT_AFTER].token_end
    stretches = []
    for start, stop in [*_planted_spans(built), (end, end)]:
        stretches.append(decode_exact(tokenizer, prompt.input_ids[cursor:start]))
        cursor = stop
    return " ".join(stretches)


def _unit_depth(built, distractor) -> float:
    """A distractor's depth counted by hand: haystack tokens before it over haystack tokens (needles not counted)."""
    prompt = built.prompt
    start = prompt.regions[REGION_CONTEXT_BEFORE].token_start
    end = prompt.regions[REGION_CONTEXT_AFTER].token_end
    planted = _planted_spans(built)
    planted_tokens = sum(b - a for a, b in planted)
    before = distractor.token_start - start - sum(b - a for a, b in planted if b <= distractor.token_start)
    return before / (end - start - planted_tokens)


PLACEMENTS = [
    ("spread", 0.5, [0.125, 0.375, 0.625, 0.875]),
    ("before", 0.5, [0.4, 0.3, 0.2, 0.1]),
    ("after", 0.5, [0.6, 0.7, 0.8, 0.9]),
    ("around", 0.5, [0.4, 0.6, 0.3, 0.7]),
    ([0.05, 0.95, 0.3, 0.3], 0.5, [0.05, 0.95, 0.3, 0.3]),
    ("before", 0.2, [0.1, 0.0, 0.0, 0.0]),  # past the haystack's start: clamped to it
]


@pytest.mark.parametrize("family", ["smollm2", "byte_bpe"])
@pytest.mark.parametrize("placement, needle_depth, expected", PLACEMENTS, ids=[f"{p[0]}@{p[1]}" for p in PLACEMENTS])
def test_distractors_sit_at_the_asked_depths_and_decode_back(tokenizers, family, placement, needle_depth, expected):
    tokenizer = tokenizers[family]
    task = _task(placement=placement)
    assert distractor_depths(task.spec.distractors, 4, needle_depth) == pytest.approx(expected)
    for trial, built in _build(tokenizer, task, _config(depths=[needle_depth])):
        prompt, needle = built.prompt, built.needle
        assert prompt.filler_tokens == 0 and len(built.distractors) == 4
        assert [d.requested_depth for d in built.distractors] == pytest.approx(expected)
        values = [d.value for d in built.distractors]
        assert len(set(values)) == 4 and needle.value not in values
        assert needle.key not in [d.key for d in built.distractors]
        builder = PromptBuilder(tokenizer)
        largest_unit = max(len(builder.fragment_ids(s)) for s in itertools.islice(task.sentences(trial.seed), 200))
        context = prompt.regions[REGION_CONTEXT_AFTER].token_end - prompt.regions[REGION_CONTEXT_BEFORE].token_start
        haystack_tokens = context - sum(b - a for a, b in _planted_spans(built))
        needle_span = prompt.regions[REGION_NEEDLE]
        for distractor, drawn in zip(built.distractors, needle.distractors):
            text = decode_exact(tokenizer, prompt.input_ids[distractor.token_start : distractor.token_end]).strip()
            assert text == distractor.text == drawn.text and distractor.value in text
            assert needle.value not in text
            assert distractor.achieved_depth == pytest.approx(_unit_depth(built, distractor))
            # the boundary nearest the asked depth: no farther than one whole unit
            assert abs(distractor.achieved_depth - distractor.requested_depth) <= largest_unit / haystack_tokens
            if distractor.requested_depth < needle_depth:  # on its side of the needle
                assert distractor.token_end <= needle_span.token_start
            elif distractor.requested_depth > needle_depth:
                assert distractor.token_start >= needle_span.token_end
        # the needle itself is where it would be without look-alikes: its depth counts haystack only
        assert abs(prompt.achieved_depth - needle_depth) < 0.1
        assert prompt.extra_needle_spans == ()  # the task's own further needles: none here


def test_counts_zero_one_four_are_paired(tokenizers):
    tokenizer = tokenizers["smollm2"]
    task = _task()
    cfg = _config(layout={"distractor_count": [0, 1, 4]}, depths=[0.0, 0.5, 1.0])
    by_count = {n: _build(tokenizer, task, cfg, distractor_count=n) for n in (0, 1, 4)}
    assert all(len(built) == 2 * 3 for built in by_count.values())  # 2 samples x 3 depths each
    for (t0, b0), (t1, b1), (t4, b4) in zip(by_count[0], by_count[1], by_count[4]):
        assert t0.seed == t1.seed == t4.seed and t0.depth == t1.depth == t4.depth and t0.trial_id != t4.trial_id
        assert b0.needle.needle == b1.needle.needle == b4.needle.needle  # same key, same value
        assert (len(b0.distractors), len(b1.distractors), len(b4.distractors)) == (0, 1, 4)
        assert b1.distractors[0].text == b4.distractors[0].text  # the first one drawn, in both
        # the same haystack stream: the shorter haystack (room taken by look-alikes) is the longer one's start
        words = {n: _haystack_text(tokenizer, b).split() for n, b in ((0, b0), (1, b1), (4, b4))}
        assert words[4] == words[1][: len(words[4])] and words[1] == words[0][: len(words[1])]
        assert len(words[0]) > len(words[4])
        assert b0.prompt.prompt_tokens <= LENGTH and b4.prompt.prompt_tokens <= LENGTH


class _SeededHaystack:
    """A haystack stream holding look-alike values in its own sentences (a user's text might)."""

    def __init__(self, poison: dict[int, list[str]]):
        self.poison = poison

    def sentences(self, seed):
        values = self.poison[seed]
        index = 0
        while True:
            yield f"Sentence {index // 3} says nothing much at all."
            if index % 3 == 0:
                yield f"A ledger once listed {values[index // 3 % len(values)]} among its rows."
            index += 1


def test_haystack_holds_no_look_alike_value_outside_the_planted_spans(tokenizers):
    tokenizer = tokenizers["smollm2"]
    spec = _task().spec
    cfg = _config(layout={"distractor_count": [0, 4]})
    trials = expand(cfg, {spec.name: spec})
    poison = {}
    for trial in trials:  # every value the seed could plant: the four placed and the ones a larger count would
        needle = PreparedTask(spec, None).parts_for(trial.seed, cfg.models[0])[1]
        poison[trial.seed] = [d.value for d in distractor_pool(spec, needle, trial.seed)]
        assert len(poison[trial.seed]) == 32 and poison[trial.seed][:4] == [d.value for d in needle.distractors]
    task = PreparedTask(spec, _SeededHaystack(poison))
    builder = PromptBuilder(tokenizer)
    for trial in trials:
        built = build_trial_prompt(builder, task, trial, cfg.models[0], cfg)
        haystack = _haystack_text(tokenizer, built)
        assert "Sentence" in haystack and built.extra["haystack_units_dropped"] > 0
        assert not any(value in haystack for value in poison[trial.seed])
        full = decode_exact(tokenizer, built.prompt.input_ids)
        assert all(full.count(d.value) == 1 for d in built.distractors)  # only where it was planted


def test_layout_count_without_a_distractors_block_is_refused(tokenizers):
    spec = load_task("passkey")
    cfg = _config(tasks=["passkey"], layout={"distractor_count": [2]})
    trial = expand(cfg, {"passkey": spec})[0]
    with pytest.raises(PlacementError, match=r"task 'passkey' has no distractors: block, so 2 look-alikes cannot "
                                             r"be placed; add one"):
        build_trial_prompt(PromptBuilder(tokenizers["byte_bpe"]), PreparedTask(spec, haystack_for_task(spec)), trial,
                           cfg.models[0], cfg)


def test_a_layout_count_above_the_tasks_draws_more_of_the_same_stream(tokenizers):
    task = _task(count=2)
    cfg = _config(layout={"distractor_count": [None, 6]})
    pairs = _build(tokenizers["byte_bpe"], task, cfg)
    task_count = [b for t, b in pairs if dict(t.layout).get("distractor_count") is None]
    six = [b for t, b in pairs if dict(t.layout).get("distractor_count") == 6]
    for two, many in zip(task_count, six):
        assert [d.text for d in two.distractors] == [d.text for d in many.distractors[:2]]
        assert len(many.distractors) == 6 and len({d.value for d in many.distractors}) == 6


def test_multikey_task_keeps_its_needles_with_distractors_added(tokenizers):
    tokenizer = tokenizers["smollm2"]
    raw = yaml.safe_load((REPO / "tasks" / "multikey.yaml").read_text())
    spec = TaskSpec.model_validate({**raw, "distractors": {"count": 3, "placement": "around", "gap": 0.05}})
    assert spec.content_hash() != load_task("multikey").content_hash()
    task = PreparedTask(spec, haystack_for_task(spec))
    cfg = _config(tasks=["multikey"], depths=[0.5], length_tolerance_tokens=0)
    for trial, built in _build(tokenizer, task, cfg):
        needle, prompt = built.needle, built.prompt
        assert len(prompt.extra_needle_spans) == 3 and len(built.distractors) == 3  # the task's 3 further needles
        keys = needle.facts["keys"]
        assert not {d.key for d in built.distractors} & set(keys)
        assert not {d.value for d in built.distractors} & set(needle.needle_values)
        for distractor in built.distractors:
            text = decode_exact(tokenizer, prompt.input_ids[distractor.token_start : distractor.token_end]).strip()
            assert text == f"One of the special magic numbers for {distractor.key} is: {distractor.value}."
        for span, value in zip(prompt.extra_needle_spans, needle.needle_values[1:]):  # its own needles, unmoved
            assert value in decode_exact(tokenizer, prompt.input_ids[span.token_start : span.token_end])
        score, extra = score_trial(f"{needle.value}", built)
        assert score.correct and [n["value"] for n in extra["needles"]] == list(needle.needle_values)


def test_controls_place_distractors_where_they_keep_their_meaning(tokenizers):
    task = _task()
    cfg = _config(controls=["closed_book", "oracle", "dummy_needle"])
    tokenizer = tokenizers["byte_bpe"]
    (_, closed), *_ = _build(tokenizer, task, cfg, control="closed_book")
    (_, oracle), *_ = _build(tokenizer, task, cfg, control="oracle")
    (_, dummy), *_ = _build(tokenizer, task, cfg, control="dummy_needle")
    assert closed.distractors == ()  # the same haystack with no fact in it at all
    regions = oracle.prompt.regions
    context = regions[REGION_CONTEXT_AFTER].token_end - regions[REGION_CONTEXT_BEFORE].token_start
    assert len(oracle.distractors) == 4  # no haystack: the context is the needle and its look-alikes
    assert context == regions[REGION_NEEDLE].length + sum(d.token_end - d.token_start for d in oracle.distractors)
    assert len(dummy.distractors) == 4


def test_record_lists_the_placed_distractors(tokenizers):
    tokenizer = tokenizers["byte_bpe"]
    task = _task()
    cfg = _config(layout={"distractor_count": [None, 0]})
    records = {}
    for trial, built in _build(tokenizer, task, cfg)[:2]:
        output = TrialOutput(generated_text=f" {built.distractors[0].value}" if built.distractors else " 1",
                             generated_token_ids=(1, 2), gold_token_ids=(3,), gold_logprob_sum=None,
                             gold_logprob_mean=None, gold_first_token_is_argmax=False, elapsed_s=0.1)
        record = trial_record(trial, built, output, revision="", think_pattern=None, max_new_tokens=8,
                              stop_token_ids=(), tokenizer=tokenizer)
        records[dict(trial.layout).get("distractor_count")] = (record, built)
    record, built = records[None]
    assert record.distractor_count is None and not record.correct
    # the answer is the first look-alike's value: the failure type names it (failures.py, end to end)
    assert (record.failure, record.failure_distractor) == ("distractor", 0)
    assert record.distractors == [dataclasses.asdict(d) for d in built.distractors]
    first = record.distractors[0]
    assert set(first) == {"text", "value", "key", "kind", "token_start", "token_end", "requested_depth",
                          "achieved_depth"}
    assert first["kind"] == "other_key" and first["requested_depth"] == 0.125
    assert decode_exact(tokenizer, built.prompt.input_ids[first["token_start"] : first["token_end"]]).strip() == \
        first["text"]
    record0, _ = records[0]
    assert record0.distractor_count == 0 and record0.distractors is None


def test_validate_refuses_a_count_the_task_cannot_place(capsys, tmp_path, tiny_model_dir):
    from run_fixtures import tiny_config

    from evalkit.cli import main

    config = tiny_config(tmp_path, tiny_model_dir, context_lengths=[256], samples=1,
                         layout={"distractor_count": [0, 2]})
    assert main(["validate", str(config)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {config}: layout.distractor_count: 2: task 'passkey' has no distractors: block, "
                           "so 2 look-alikes cannot be placed; add one")
    fixed = tmp_path / "fixed.yaml"  # two fixed depths cannot place three
    fixed.write_text(yaml.safe_dump({**DISTRACTORS_TASK, "name": "fixed", "distractors": {
        "count": 2, "placement": [0.1, 0.9]}}))
    config = tiny_config(tmp_path, tiny_model_dir, tasks=[str(fixed)], context_lengths=[256], samples=1,
                         layout={"distractor_count": [None, 3]})
    assert main(["validate", str(config)]) == 2
    assert "layout.distractor_count: 3: distractors.placement lists 2 depths and 3 distractors are placed" in \
        capsys.readouterr().err
    config = tiny_config(tmp_path, tiny_model_dir, tasks=["distractors"], context_lengths=[256], samples=1,
                         mitigations=["none", "reorder_by_relevance"])
    assert main(["validate", str(config)]) == 2
    error = capsys.readouterr().err
    assert "mitigations[1]: reorder_by_relevance would move the look-alikes of task distractors" in error


def test_a_run_records_every_placed_distractor(tmp_path, tiny_model_dir):
    from run_fixtures import records, tiny_config

    from evalkit.config.schema import load_config
    from evalkit.run.runner import run_eval

    path = tiny_config(tmp_path, tiny_model_dir, tasks=["distractors"], context_lengths=[256], depths=[0.5],
                       samples=1, layout={"distractor_count": [0, 1, 4]},
                       models=[{"name": str(tiny_model_dir), "dtype": "float32", "device": "cpu",
                                "max_new_tokens": 12}])
    summary = run_eval(load_config(path), path, quiet=True)
    rows = sorted(records(summary.run_dir), key=lambda r: r["distractor_count"])
    assert [r["distractor_count"] for r in rows] == [0, 1, 4]
    assert rows[0]["distractors"] is None and [len(r["distractors"]) for r in rows[1:]] == [1, 4]
    same = ("text", "value", "key", "kind")  # the first drawn in both; spread puts one at 0.5, four from 0.125
    assert [rows[1]["distractors"][0][k] for k in same] == [rows[2]["distractors"][0][k] for k in same]
    assert [d["requested_depth"] for d in rows[2]["distractors"]] == [0.125, 0.375, 0.625, 0.875]
    assert len({r["needle"] for r in rows}) == 1 and all(r["gold_answer"] not in
                                                          [d["value"] for d in r["distractors"] or ()] for r in rows)


@pytest.mark.parametrize("kind", ["same_value", "variant"])
def test_every_kind_is_placed_and_decodes_back(tokenizers, kind):
    tokenizer = tokenizers["byte_bpe"]
    variants = ["A special magic number for {key} used to be {value}."]
    task = _task(kind=kind, **({"variants": variants} if kind == "variant" else {}))
    for trial, built in _build(tokenizer, task, _config()):
        needle, ids = built.needle, built.prompt.input_ids
        texts = [decode_exact(tokenizer, ids[d.token_start : d.token_end]).strip() for d in built.distractors]
        assert texts == [d.text for d in needle.distractors] and len(texts) == 4
        full = decode_exact(tokenizer, ids)
        if kind == "same_value":  # the gold value under four other keys: five times in all, nowhere else
            assert full.count(needle.value) == 5 and needle.key not in {d.key for d in built.distractors}
        else:  # the asked key in near misses, each with its own value
            assert all(t == variants[0].format(key=needle.key, value=d.value) for t, d in zip(texts, built.distractors))
            assert full.count(needle.value) == 1
