"""Documents prompts (evalkit/prompt/documents.py, document_trials.py): the paper's text, spans, positions."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from evalkit.config.schema import ModelConfig
from evalkit.errors import PlacementError
from evalkit.prompt.builder import PromptBuilder
from evalkit.prompt.controls import build_trial_prompt
from evalkit.prompt.documents import gold_position
from evalkit.prompt.tokenization import decode_exact
from evalkit.run.preflight import PreparedTask
from evalkit.tasks.document_spec import DocumentsSpec
from evalkit.tasks.documents import DocumentCorpus
from evalkit.tasks.spec import TaskSpec
from evalkit.types import Trial

DATA = Path(__file__).parents[1] / "tasks" / "data" / "lost_in_the_middle"
KV_TEMPLATE = ('Extract the value corresponding to the specified key in the JSON object below.\n\nJSON data:\n'
               '{{{search_results}}}\n\nKey: "{question}"\nCorresponding value:')


class _Config:
    seed = 0
    context_lengths = [8192]


def prepared(documents: dict, metric: str = "best_subspan_em") -> PreparedTask:
    spec = TaskSpec.model_validate({"name": "docs", "documents": documents, "metric": metric})
    return PreparedTask(spec, DocumentCorpus(spec.documents, DATA, spec.metric))


def build(tokenizer, task, depth=0.0, control="", sample=0, chat=False, length=8192):
    trial = Trial("t", "m", "docs", length, depth, sample, 0, control, ())
    return build_trial_prompt(PromptBuilder(tokenizer), task, trial, ModelConfig(name="m", chat_template=chat), _Config())


def liu_qa_prompt(template_file: str, question: str, documents) -> str:
    """Liu et al.'s get_qa_prompt, as their repository writes it."""
    prompt_template = (DATA / template_file).read_text().rstrip("\n")
    formatted = [f"Document [{i + 1}](Title: {d.title}) {d.text}" for i, d in enumerate(documents)]
    return prompt_template.format(question=question, search_results="\n".join(formatted))


def liu_kv_prompt(data, key: str) -> str:
    """Liu et al.'s get_kv_retrieval_prompt, as their repository writes it."""
    prompt_template = (DATA / "kv_retrieval.prompt").read_text().rstrip("\n")
    formatted = ""
    for index, record in enumerate(data):
        start = "{" if index == 0 else " "
        end = ",\n" if index != len(data) - 1 else "}"
        formatted += start + f'"{record[0]}": "{record[1]}"' + end
    return prompt_template.format(formatted_kv_records=formatted, key=key)


def test_the_paper_qa_prompt_byte_for_byte(smollm2_tokenizer):
    task = prepared({"source": {"format": "liu_qa", "path": "nq-open-oracle-40.jsonl"}, "total": 5})
    built = build(smollm2_tokenizer, task, depth=0.5)
    example = task.haystack.example(task.haystack.example_index(0, 0))
    documents = list(example.distractors)
    documents.insert(2, example.gold)
    expected = liu_qa_prompt("qa.prompt", example.question, documents)
    assert decode_exact(smollm2_tokenizer, built.prompt.input_ids) == expected
    # the ids are the plain encoding of that text: what the user's own pipeline would send
    assert list(built.prompt.input_ids) == smollm2_tokenizer.encode(expected, add_special_tokens=False)
    assert built.gold_document_index == 2 and built.documents_total == 5


def test_query_aware_contextualisation_is_a_template(smollm2_tokenizer):
    template = (DATA / "qa_with_query_aware_contextualization.prompt").read_text().rstrip("\n")
    task = prepared({"source": {"format": "liu_qa", "path": "nq-open-oracle-40.jsonl"}, "total": 3,
                     "template": template})
    built = build(smollm2_tokenizer, task, depth=1.0)
    example = task.haystack.example(task.haystack.example_index(0, 0))
    expected = liu_qa_prompt("qa_with_query_aware_contextualization.prompt", example.question,
                             [*example.distractors, example.gold])
    assert decode_exact(smollm2_tokenizer, built.prompt.input_ids) == expected


def test_the_paper_kv_prompt_byte_for_byte(smollm2_tokenizer):
    task = prepared({"source": {"format": "liu_kv", "path": "kv-retrieval-75_keys-3.jsonl.gz"}, "total": 75,
                     "template": KV_TEMPLATE, "document_format": '"{title}": "{text}"', "separator": ",\n "})
    row = json.loads(gzip.open(DATA / "kv-retrieval-75_keys-3.jsonl.gz", "rt").readlines()[task.haystack.example_index(0, 0)])
    built = build(smollm2_tokenizer, task, depth=0.25)
    pairs = [p for p in row["ordered_kv_records"] if p[0] != row["key"]]
    pairs.insert(gold_position(0.25, 75), [row["key"], row["value"]])
    assert decode_exact(smollm2_tokenizer, built.prompt.input_ids) == liu_kv_prompt(pairs, row["key"])
    assert built.gold_document_index == 19 == gold_position(0.25, 75)


@pytest.mark.parametrize("chat", [False, True])
def test_spans_tile_the_prompt_and_the_gold_is_where_asked(smollm2_tokenizer, chat):
    task = prepared({"source": {"format": "liu_qa", "path": "nq-open-oracle-40.jsonl"}, "total": 7})
    for depth, index in ((0.0, 0), (0.5, 3), (1.0, 6), (0.3, 2)):
        built = build(smollm2_tokenizer, task, depth=depth, sample=3, chat=chat)
        prompt = built.prompt
        assert built.gold_document_index == index == gold_position(depth, 7)
        spans = prompt.document_spans
        assert len(spans) == 7 and all(s.length > 0 for s in spans)
        order = ["preamble", "context_before", "needle", "context_after", "question"]
        edges = [prompt.regions[n] for n in order]
        assert edges[0].token_start == 0 and edges[-1].token_end == prompt.prompt_tokens
        assert all(a.token_end == b.token_start for a, b in zip(edges, edges[1:]))
        # the documents tile the context regions, the gold one is the needle region
        assert spans[0].token_start == prompt.regions["context_before"].token_start
        assert spans[-1].token_end == prompt.regions["context_after"].token_end
        assert all(a.token_end == b.token_start for a, b in zip(spans, spans[1:]))
        assert spans[index] == prompt.regions["needle"]
        gold_text = decode_exact(smollm2_tokenizer, prompt.input_ids[spans[index].token_start:spans[index].token_end])
        assert gold_text.strip().startswith(f"Document [{index + 1}](Title: ")
        assert built.needle.needle in gold_text
        texts = [decode_exact(smollm2_tokenizer, prompt.input_ids[s.token_start:s.token_end]) for s in spans]
        assert all(t.lstrip("\n").startswith(f"Document [{i + 1}]") for i, t in enumerate(texts))


def test_every_position_shows_the_same_documents(smollm2_tokenizer):
    task = prepared({"source": {"format": "liu_qa", "path": "nq-open-oracle-40.jsonl"}, "total": 5})
    example = task.haystack.example(task.haystack.example_index(1, 0))
    titles = set()
    for depth in (0.0, 0.5, 1.0):
        text = decode_exact(smollm2_tokenizer, build(smollm2_tokenizer, task, depth=depth, sample=1).prompt.input_ids)
        titles.add(frozenset(d.title for d in (example.gold, *example.distractors) if f"(Title: {d.title})" in text))
    assert len(titles) == 1 and len(next(iter(titles))) == len({example.gold.title, *(d.title for d in example.distractors)})


def test_controls_are_the_papers_baselines(smollm2_tokenizer):
    task = prepared({"source": {"format": "liu_qa", "path": "nq-open-oracle-40.jsonl"}, "total": 5})
    example = task.haystack.example(task.haystack.example_index(0, 0))
    closed = build(smollm2_tokenizer, task, depth=float("nan"), control="closed_book")
    assert decode_exact(smollm2_tokenizer, closed.prompt.input_ids) == \
        (DATA / "closedbook_qa.prompt").read_text().rstrip("\n").format(question=example.question)
    assert closed.documents_total == 0 and closed.prompt.regions["needle"].length == 0
    oracle = build(smollm2_tokenizer, task, depth=float("nan"), control="oracle")
    assert decode_exact(smollm2_tokenizer, oracle.prompt.input_ids) == liu_qa_prompt("qa.prompt", example.question,
                                                                                     [example.gold])
    assert (oracle.gold_document_index, oracle.documents_total) == (0, 1)
    with pytest.raises(PlacementError, match="dummy_needle.*not defined"):
        build(smollm2_tokenizer, task, control="dummy_needle")


def test_a_prompt_above_the_context_length_is_refused(smollm2_tokenizer):
    task = prepared({"source": {"format": "liu_qa", "path": "nq-open-oracle-40.jsonl"}, "total": 5})
    with pytest.raises(PlacementError, match="above context_length 300; raise context_lengths"):
        build(smollm2_tokenizer, task, length=300)


def test_a_tokenizer_without_offsets_is_refused_in_one_line(smollm2_tokenizer):
    from evalkit.prompt.documents import DocumentFrame, build_document_prompt
    from evalkit.tasks.documents import Document

    class SlowTokenizer:
        is_fast = False

    spec = DocumentsSpec.model_validate({"source": {"format": "liu_qa", "path": "x"}, "total": 1})
    with pytest.raises(PlacementError, match="need a fast tokenizer"):
        build_document_prompt(SlowTokenizer(), spec, DocumentFrame(False, None, ""), "q?", [Document("t", "x")], 0,
                              100, 0.0)


def test_the_gold_answer_and_aliases_reach_the_score(smollm2_tokenizer):
    task = prepared({"source": {"format": "liu_qa", "path": "nq-open-oracle-40.jsonl"}, "total": 3})
    built = build(smollm2_tokenizer, task)
    aliases = built.needle.answer_aliases
    assert built.needle.answer == aliases[0]
    assert decode_exact(smollm2_tokenizer, built.gold_ids).strip() == aliases[0]
    assert built.metric == "best_subspan_em"


def test_records_state_the_questions_left_out_and_flag_a_kept_one(smollm2_tokenizer):
    source = {"format": "liu_qa", "path": "nq-open-oracle-40.jsonl"}
    task = prepared({"source": source, "total": 3}, metric="liu")
    for control in ("", "closed_book", "oracle"):
        built = build(smollm2_tokenizer, task, control=control)
        assert built.extra["self_answering_left_out"] == 2 and "self_answering" not in built.extra
    kept = prepared({"source": source, "total": 3, "keep_self_answering": True}, metric="liu")
    sample = next(s for s in range(40) if kept.haystack.example_index(s, 0) == 13)
    flagged = build(smollm2_tokenizer, kept, control="closed_book", sample=sample)
    assert flagged.needle.question == "what is the main mineral in lithium batteries"
    assert flagged.extra["self_answering"] is True and "self_answering_left_out" not in flagged.extra
    # leaving them out changes which question a sample asks: a new task hash; keeping them keeps the old one
    assert kept.spec.content_hash() == "7306d39d70bf1011" != task.spec.content_hash()


@pytest.mark.parametrize("documents, message", [
    ({"source": {"format": "liu_qa", "path": "x"}, "template": "no results {question}"}, "has no {search_results}"),
    ({"source": {"format": "liu_qa", "path": "x"}, "template": "{search_results} {answer}"}, "uses {answer}"),
    ({"source": {"format": "liu_qa", "path": "x"}, "document_format": "{title}"}, "has no {text}"),
    ({"source": {"format": "nq", "path": "x"}}, "format"),
    ({"source": {"format": "liu_qa", "path": "x"}, "total": 0}, "greater than or equal to 1"),
])
def test_bad_documents_blocks_are_refused(documents, message):
    with pytest.raises(ValidationError, match=message):
        DocumentsSpec.model_validate(documents)


def test_a_documents_task_takes_no_needle():
    with pytest.raises(ValidationError, match="documents task"):
        TaskSpec.model_validate({"name": "d", "needle": "{value}", "documents": {"source": {"format": "liu_qa",
                                                                                            "path": "x"}}})


def test_content_free_documents_keep_each_ones_length_and_say_nothing_of_it():
    from evalkit.prompt.documents import content_free_documents
    from evalkit.tasks.documents import Document

    docs = [Document("Ned Kelly", "Ned Kelly was an Australian bushranger, outlaw and gang leader."),
            Document("", "Short."), Document("A title", "x" * 300)]
    blank = content_free_documents(docs, "nothing to see here")
    assert len(blank) == 3 and blank[1].title == "" and blank[0].title
    for doc, free in zip(docs, blank):
        assert len(doc.text) <= len(free.text) < len(doc.text) + len(" nothing") and set(free.text.split()) <= {
            "nothing", "to", "see", "here"}


def test_content_free_documents_match_token_lengths_when_given_a_tokenizer(smollm2_tokenizer):
    from evalkit.prompt.documents import content_free_documents
    from evalkit.tasks.documents import Document

    count = lambda text: len(smollm2_tokenizer(text, add_special_tokens=False)["input_ids"])
    doc = Document("Ned Kelly", "Edward Kelly (December 1854 - 11 November 1880) was an Australian bushranger.")
    (free,) = content_free_documents([doc], "This passage is left blank on purpose.", count)
    assert count(free.text) - count(doc.text) in (0, 1, 2) and count(free.title) >= count(doc.title)
