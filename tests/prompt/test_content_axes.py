"""The content axes of a trial's prompt: haystack order (coherent / shuffled), needle variants, and the measured
similarity of the needle to the question, through ``build_trial_prompt`` and into the record."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from evalkit.config.schema import EvalConfig
from evalkit.prompt.builder import PromptBuilder
from evalkit.prompt.controls import build_trial_prompt
from evalkit.prompt.shuffle import shuffle_units
from evalkit.prompt.similarity import needle_similarity
from evalkit.run.plan import expand
from evalkit.run.preflight import PreparedTask
from evalkit.run.trial_record import trial_record
from evalkit.tasks import haystack_for_task, load_task_file, split_sentences
from evalkit.types import TrialOutput

TASK = """\
name: variants
needle: "The secret access code for the northern archive is {value}."
needle_variants:
  medium: "Anyone can open the archive in the north with the code {value}."
  low: "To get into the vault near the pole, type {value} on its keypad."
value: {kind: integer, digits: 5}
question: "What is the secret access code for the northern archive?"
answer_prefix: "The code is"
"""


@pytest.fixture(scope="module")
def variants_task(tmp_path_factory):
    path = tmp_path_factory.mktemp("tasks") / "variants.yaml"
    path.write_text(TASK)
    spec = load_task_file(path)
    return PreparedTask(spec, haystack_for_task(spec))


def _config(**layout) -> EvalConfig:
    return EvalConfig.model_validate(dict(models=["m"], tasks=["variants"], context_lengths=[512], depths=[0.5],
                                          samples=2, output_dir="out", layout=layout))


def _trials(cfg, task):
    return expand(cfg, {"variants": task.spec})


def _context_sentences(tokenizer, built) -> list[str]:
    """The haystack's sentences in prompt order (the needle left out)."""
    prompt = built.prompt
    texts = []
    for region in ("context_before", "context_after"):
        span = prompt.regions[region]
        texts += split_sentences(tokenizer.decode(list(prompt.input_ids[span.token_start:span.token_end])))
    return texts


def test_shuffled_haystack_holds_the_coherent_sentences_in_a_seeded_order(smollm2_tokenizer, variants_task):
    cfg = _config(haystack_order=["coherent", "shuffled"])
    builder = PromptBuilder(smollm2_tokenizer)
    trials = _trials(cfg, variants_task)
    by = {(dict(t.layout).get("haystack_order", "coherent"), t.sample): t for t in trials}
    for sample in (0, 1):
        coherent = build_trial_prompt(builder, variants_task, by["coherent", sample], cfg.models[0], cfg)
        shuffled = build_trial_prompt(builder, variants_task, by["shuffled", sample], cfg.models[0], cfg)
        a, b = _context_sentences(smollm2_tokenizer, coherent), _context_sentences(smollm2_tokenizer, shuffled)
        assert Counter(a) == Counter(b) and a != b  # the same sentences, another order
        # paired: same needle and value, same length, same requested depth, the achieved one within a sentence
        assert shuffled.needle == coherent.needle and shuffled.prompt.prompt_tokens == coherent.prompt.prompt_tokens
        assert shuffled.prompt.requested_depth == coherent.prompt.requested_depth == 0.5
        haystack = sum(coherent.prompt.regions[r].length for r in ("context_before", "context_after"))
        longest = max(len(builder.fragment_ids(s)) for s in a)
        assert abs(shuffled.prompt.achieved_depth - coherent.prompt.achieved_depth) <= longest / haystack
        again = build_trial_prompt(PromptBuilder(smollm2_tokenizer), variants_task, by["shuffled", sample],
                                   cfg.models[0], cfg)
        assert again.prompt.input_ids == shuffled.prompt.input_ids  # deterministic per seed
        if sample == 0:
            first = b
    assert first != b  # another seed, another haystack


def test_shuffle_keeps_the_opening_filler_and_permutes_by_seed():
    filler, units = [(1, 2), (3,)], [(10 + i,) for i in range(12)]
    shuffled = shuffle_units([*filler, *units], 3, seed=7)
    assert shuffled[:2] == filler and sorted(shuffled[2:]) == units and shuffled[2:] != units
    assert shuffle_units([*filler, *units], 3, seed=7) == shuffled
    assert shuffle_units([*filler, *units], 3, seed=8) != shuffled
    assert sorted(shuffle_units(list(units), 0, seed=7)) == units


def test_needle_variant_places_its_text_with_the_same_value(smollm2_tokenizer, variants_task):
    cfg = _config(needle_variant=[None, "medium", "low"])
    builder = PromptBuilder(smollm2_tokenizer)
    built = {dict(t.layout).get("needle_variant"): build_trial_prompt(builder, variants_task, t, cfg.models[0], cfg)
             for t in _trials(cfg, variants_task) if t.sample == 0}
    value = built[None].needle.value
    assert built["low"].needle.value == built["medium"].needle.value == value
    assert built["low"].needle.needle == f"To get into the vault near the pole, type {value} on its keypad."
    assert built["low"].prompt.needle_text == built["low"].needle.needle
    span = built["low"].prompt.regions["needle"]
    placed = smollm2_tokenizer.decode(list(built["low"].prompt.input_ids[span.token_start:span.token_end]))
    assert placed.strip() == built["low"].needle.needle
    assert {b.needle.question for b in built.values()} == {built[None].needle.question}  # only the needle varies
    # graded similarity, measured: the task's needle shares every content word, the low variant none
    assert built[None].similarity.overlap == 1.0 and built["low"].similarity.overlap == 0.0
    assert built[None].similarity.bm25 > built["medium"].similarity.bm25 > built["low"].similarity.bm25 == 0.0


def test_similarity_equals_a_hand_computation():
    # question content words {secret, code, archive}; the needle holds archive and code: 2 of 3
    question, needle = "What is the secret code of the archive?", "The archive code is 4242."
    found = needle_similarity(question, needle, ["The river runs north.", "An archive holds old maps."])
    # BM25 (bm25s: k1 1.5, b 0.75, Lucene idf ln(1 + (N - df + 0.5) / (df + 0.5)), tf / (tf + k1 (1 - b + b dl/avgdl)))
    # over the corpus [archive code 4242], [river runs north], [archive holds old maps]: N 3, avgdl 10/3, the
    # needle's dl 3; "secret" is in no document; archive df 2, code df 1
    k1, b, n, avgdl, dl = 1.5, 0.75, 3, 10 / 3, 3
    idf = {df: math.log(1 + (n - df + 0.5) / (df + 0.5)) for df in (1, 2)}
    tf = 1 / (1 + k1 * (1 - b + b * dl / avgdl))
    assert found.overlap == pytest.approx(2 / 3, abs=1e-6)
    assert found.bm25 == pytest.approx(idf[2] * tf + idf[1] * tf, abs=1e-5)


def test_record_carries_the_content_axes_and_similarity(smollm2_tokenizer, variants_task):
    cfg = _config(haystack_order=["shuffled"], needle_variant=["medium"])
    trial = next(t for t in _trials(cfg, variants_task) if t.sample == 0)
    built = build_trial_prompt(PromptBuilder(smollm2_tokenizer), variants_task, trial, cfg.models[0], cfg)
    output = TrialOutput(f" {built.needle.value}", (1, 2), (1,), -0.5, -0.5, True, 0.1)
    record = trial_record(trial, built, output, revision="r", think_pattern=None, max_new_tokens=8,
                          stop_token_ids=(), tokenizer=smollm2_tokenizer)
    assert (record.haystack_order, record.needle_variant) == ("shuffled", "medium")
    assert record.needle == built.needle.needle and record.correct
    assert record.question_overlap == built.similarity.overlap == pytest.approx(0.4)  # archive, code of five
    assert record.question_bm25 == built.similarity.bm25 > 0


def test_closed_book_has_no_similarity_and_its_haystack_is_shuffled_too(smollm2_tokenizer, variants_task):
    cfg = _config(haystack_order=["coherent", "shuffled"]).model_copy(update={"controls": ["closed_book"]})
    builder = PromptBuilder(smollm2_tokenizer)
    closed = [t for t in _trials(cfg, variants_task) if t.control == "closed_book" and t.sample == 0]
    coherent, shuffled = (build_trial_prompt(builder, variants_task, t, cfg.models[0], cfg) for t in closed)
    assert coherent.similarity is None and shuffled.similarity is None
    a, b = _context_sentences(smollm2_tokenizer, coherent), _context_sentences(smollm2_tokenizer, shuffled)
    assert Counter(a) == Counter(b) and a != b


def test_run_records_paired_content_axes_and_similarity(tmp_path, tiny_model_dir):
    from conftest import write_config
    from evalkit.config.schema import load_config
    from evalkit.report.data.load import load_results
    from evalkit.run.runner import run_eval

    path = write_config(
        tmp_path / "c.yaml", models=[{"name": str(tiny_model_dir), "dtype": "float32", "device": "cpu",
                                      "max_new_tokens": 8}],
        tasks=["similarity"], context_lengths=[256], depths=[0.5], samples=1, output_dir=str(tmp_path / "run"),
        layout={"needle_variant": ["high", "low"], "haystack_order": ["coherent", "shuffled"]})
    summary = run_eval(load_config(path), path, quiet=True)
    df = load_results(summary.run_dir)
    assert summary.ran == 4 and len({*df["prompt_sha256"]}) == 4
    assert sorted(zip(df["needle_variant"], df["haystack_order"])) == [
        ("high", "coherent"), ("high", "shuffled"), ("low", "coherent"), ("low", "shuffled")]
    assert len({*df["seed"]}) == 1 and len({*df["gold_answer"]}) == 1  # paired: one value for the four
    by_variant = df.groupby("needle_variant")
    assert by_variant["question_overlap"].unique().to_dict() == {"high": [1.0], "low": [0.0]}
    bm25 = by_variant["question_bm25"].unique().to_dict()
    assert len(bm25["high"]) == 1 and bm25["high"][0] > 0 and list(bm25["low"]) == [0.0]  # shuffling keeps the score



def test_a_documents_trial_measures_the_gold_documents_similarity(smollm2_tokenizer):
    from pathlib import Path

    from evalkit.config.schema import ModelConfig
    from evalkit.prompt.reorder import relevance_scores
    from evalkit.tasks.documents import DocumentCorpus
    from evalkit.tasks.entities import lexical_overlap
    from evalkit.tasks.spec import TaskSpec
    from evalkit.types import Trial

    class Config:
        seed, context_lengths = 0, [8192]

    spec = TaskSpec.model_validate({"name": "docs", "metric": "best_subspan_em", "documents": {
        "source": {"format": "liu_qa", "path": "nq-open-oracle-40.jsonl"}, "total": 5}})
    task = PreparedTask(spec, DocumentCorpus(spec.documents, Path(__file__).parents[1] / "tasks" / "data" /
                                             "lost_in_the_middle", spec.metric))
    example = task.haystack.example(task.haystack.example_index(0, 0))
    built = {}
    for depth, control in ((0.0, ""), (1.0, ""), (math.nan, "closed_book")):
        trial = Trial("t", "m", "docs", 8192, depth, 0, 0, control, ())
        built[depth, control] = build_trial_prompt(PromptBuilder(smollm2_tokenizer), task, trial, ModelConfig(name="m"),
                                                   Config())
    first, last = built[0.0, ""].similarity, built[1.0, ""].similarity
    documents = [example.gold, *example.distractors]
    assert first == last  # the same documents at every gold position
    assert first.bm25 == pytest.approx(relevance_scores(example.question, documents)[0], abs=1e-5)
    assert first.overlap == pytest.approx(lexical_overlap(example.question, f"{example.gold.title} {example.gold.text}"),
                                          abs=1e-6)
    assert built[math.nan, "closed_book"].similarity is None
