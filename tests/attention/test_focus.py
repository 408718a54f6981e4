"""Where the answer step looked (attention/focus.py) on hand-built arrays; distractor regions; their storage."""

from __future__ import annotations

import numpy as np
import pytest

from evalkit.attention.focus import FOCUS_RATIO, attention_focus
from evalkit.attention.regions import PARTITION, region_layout
from evalkit.store.format import read_trial_attention, save_trial_attention
from evalkit.types import BuiltPrompt, TokenSpan, TrialAttention

# a 100-token prompt: preamble [0, 10), context_before [10, 50) holding a look-alike at [20, 30), needle [50, 60),
# context_after [60, 90), question [90, 100); one bin
SPANS = {"sink": (0, 1), "preamble": (1, 10), "context_before": (10, 50), "needle": (50, 60),
         "context_after": (60, 90), "question": (90, 100), "generated": (100, 100), "bin_00": (10, 90),
         "distractor_00": (20, 30)}


def hand_built(masses: dict[str, float], documents: dict[str, tuple[tuple[int, int], float]] | None = None,
               spans: dict[str, tuple[int, int]] | None = None) -> TrialAttention:
    """Row 0's mass on each region, the same in every layer and head (2 layers, 2 heads, 1 row)."""
    spans = dict(spans or SPANS)
    documents = documents or {}
    distractors = [n for n in spans if n.startswith("distractor_")]
    names = [n for n in spans if not n.startswith("distractor_")] + list(documents) + distractors
    spans.update({name: span for name, (span, _) in documents.items()})
    masses = {**masses, **{name: mass for name, (_, mass) in documents.items()}}
    mass = np.zeros((2, 2, 1, len(names)), dtype=np.float32)
    for i, name in enumerate(names):
        mass[..., i] = masses.get(name, 0.0)
    return TrialAttention(
        mass=mass, remainder=np.zeros((2, 2, 1)), argmax_position=np.zeros((2, 2, 1), dtype=np.int64),
        argmax_token=np.zeros((2, 2, 1), dtype=np.int64), row_token=np.zeros(1, dtype=np.int64),
        row_in_needle=np.zeros(1, dtype=bool), region_names=tuple(names),
        spans=np.array([spans[n] for n in names], dtype=np.int64), bins=1, prompt_tokens=100,
        documents=len(documents), distractors=len(distractors),
    )


def test_focus_on_the_fact():
    # needle 0.3 / 10 tokens = 0.03 per token; haystack (0.2 + 0.3 + 0.1) / 80 = 0.0075; look-alike 0.05 / 10
    att = hand_built({"context_before": 0.2, "needle": 0.3, "context_after": 0.1, "distractor_00": 0.05})
    assert attention_focus(att) == "fact"


def test_focus_on_a_look_alike():
    att = hand_built({"context_before": 0.5, "needle": 0.1, "context_after": 0.1, "distractor_00": 0.4})
    assert attention_focus(att) == "look_alike"  # 0.04 per token on the look-alike, 0.01 on the fact


def test_focus_on_neither_when_nothing_stands_out():
    # haystack 0.8 / 80 = 0.01 per token; the fact 0.015 and the look-alike 0.01 are under twice that
    att = hand_built({"context_before": 0.5, "needle": 0.15, "context_after": 0.15, "distractor_00": 0.1})
    assert FOCUS_RATIO == 2.0 and attention_focus(att) == "neither"
    # just over twice the mean: looked at
    att = hand_built({"context_before": 0.3, "needle": 0.3, "context_after": 0.2, "distractor_00": 0.1})
    assert attention_focus(att) == "fact"  # 0.03 per token >= 2 * 0.8 / 80


def test_focus_without_distractors_and_undefined_without_a_needle_or_haystack():
    no_distractor = {k: v for k, v in SPANS.items() if k != "distractor_00"}
    att = hand_built({"context_before": 0.2, "needle": 0.3, "context_after": 0.1}, spans=no_distractor)
    assert att.distractors == 0 and attention_focus(att) == "fact"
    closed_book = {**no_distractor, "needle": (50, 50)}
    assert attention_focus(hand_built({"context_before": 0.5}, spans=closed_book)) is None
    oracle = {**no_distractor, "context_before": (10, 10), "context_after": (20, 20), "needle": (10, 20)}
    assert attention_focus(hand_built({"needle": 0.5}, spans=oracle)) is None


def test_documents_focus_compares_the_gold_document_with_the_others():
    spans = {k: v for k, v in SPANS.items() if k != "distractor_00"}
    spans.update({"context_before": (10, 30), "needle": (30, 50), "context_after": (50, 90)})
    docs = {"doc_00": ((10, 30), 0.05), "doc_01": ((30, 50), 0.1), "doc_02": ((50, 70), 0.4), "doc_03": ((70, 90), 0)}
    att = hand_built({"context_before": 0.05, "needle": 0.1, "context_after": 0.4}, docs, spans)
    assert attention_focus(att) == "look_alike"  # doc_02 holds 0.02 per token, the gold doc_01 0.005
    docs["doc_01"], docs["doc_02"] = ((30, 50), 0.4), ((50, 70), 0.1)
    att = hand_built({"context_before": 0.05, "needle": 0.4, "context_after": 0.1}, docs, spans)
    assert attention_focus(att) == "fact"


def prompt_of_100_tokens() -> BuiltPrompt:
    regions = {name: TokenSpan(*SPANS[name]) for name in ("context_before", "needle", "context_after", "question")}
    regions["preamble"] = TokenSpan(0, 10)
    return BuiltPrompt(input_ids=tuple(range(100)), regions=regions, needle_text="", requested_context_length=100,
                       length_tolerance_tokens=0, requested_depth=0.5, achieved_depth=0.5, prompt_sha256="")


def test_distractor_spans_become_the_last_regions():
    layout = region_layout(prompt_of_100_tokens(), bins=2, sink_tokens=1, decode_steps=0,
                           distractor_spans=((20, 30), (70, 75)))
    assert layout.names[-2:] == ("distractor_00", "distractor_01")
    assert layout.spans[-2:] == ((20, 30), (70, 75))
    assert layout.partition_size == len(PARTITION) and layout.distractors == 2
    assert region_layout(prompt_of_100_tokens(), 2, 1, 0).distractors == 0


def test_distractor_regions_are_stored_and_read_back(tmp_path):
    att = hand_built({"context_before": 0.2, "needle": 0.3, "context_after": 0.1, "distractor_00": 0.05})
    back = read_trial_attention(save_trial_attention(tmp_path, "t1", att))
    assert back.distractors == 1 and back.partition_size == len(PARTITION)
    assert back.region_names[back.distractor_slice] == ("distractor_00",)
    assert back.document_slice == slice(len(PARTITION) + 1, len(PARTITION) + 1)
    assert attention_focus(back) == "fact"


@pytest.mark.parametrize("documents", [0, 3])
def test_document_and_distractor_slices_do_not_overlap(documents):
    docs = {f"doc_{i:02d}": ((10 + 20 * i, 30 + 20 * i), 0.1) for i in range(documents)}
    att = hand_built({}, docs)
    names = att.region_names
    assert all(n.startswith("doc_") for n in names[att.document_slice]) and len(names[att.document_slice]) == documents
    assert names[att.distractor_slice] == ("distractor_00",)
