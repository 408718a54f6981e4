"""Placement tests: exact offsets on a hand-built tokenizer, properties over three tokenizer families.

Families (FAMILY_NAMES): SmolLM2 (byte BPE, ChatML); a byte BPE trained here, plain and with BOS plus
a chat template; a SentencePiece BPE trained here, converted to a Llama tokenizer both the
transformers-5 way (Metaspace) and the Hub-legacy way (a normalizer that prepends ``▁`` to every text).
The property test checks every built prompt against references that do not come from the builder:
the context ids must equal each tokenizer's own encoding of ``" " + sentence`` (SentencePiece's own
``encode`` for the Llama tokenizers), spliced at the best sentence boundary, with the needle decoding
to itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
import string
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizer_fixtures import (
    CHATML_BOS_TEMPLATE,
    byte_bpe_tokenizer,
    generated_corpus,
    llama_tokenizer_from_sentencepiece,
    train_sentencepiece,
    word_level_tokenizer,
)

from evalkit.errors import HaystackError, PlacementError
from evalkit.prompt.builder import PromptBuilder, build_prompt, gold_continuation_ids
from evalkit.prompt.filler import filler_ids
from evalkit.types import REGION_NAMES, BuiltPrompt, PromptParts

EXAMPLES_PER_FAMILY = 200
FAMILY_NAMES = ["smollm2", "byte_bpe", "byte_bpe_bos_chat", "sentencepiece_llama", "sentencepiece_llama_legacy"]


@dataclass(frozen=True)
class Family:
    """A tokenizer under test and an independent reference for a mid-text piece's ids."""

    tokenizer: Any
    reference_ids: Callable[[str], list[int]]  # ids of " " + text in running text, not via evalkit
    has_chat_template: bool
    sentencepiece: Any = None  # the SentencePieceProcessor a Llama-style tokenizer was converted from
    legacy: bool = False  # Hub-style normalizer pipeline: decode -> encode is not the identity


def _byte_level_family(tokenizer: Any, has_chat_template: bool) -> Family:
    # the GPT-2 pre-tokenizer splits " word" off on its own, so encoding " " + text alone is mid-text
    def reference(text: str) -> list[int]:
        return tokenizer.encode(" " + text, add_special_tokens=False, split_special_tokens=True)

    return Family(tokenizer, reference, has_chat_template)


def _sentencepiece_family(model_path, legacy: bool) -> Family:
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(model_path))
    tokenizer = llama_tokenizer_from_sentencepiece(model_path, legacy=legacy)
    # SentencePiece's dummy prefix turns "text" into "▁text": the piece as it sits after a space
    return Family(tokenizer, processor.encode, True, sentencepiece=processor, legacy=legacy)


@pytest.fixture(scope="session")
def families(smollm2_tokenizer, tmp_path_factory) -> dict[str, Family]:
    """The tokenizer families, trained once per session (keys: FAMILY_NAMES)."""
    corpus = generated_corpus()
    model_path = train_sentencepiece(corpus, tmp_path_factory.mktemp("spm"))
    return {
        "smollm2": _byte_level_family(smollm2_tokenizer, True),
        "byte_bpe": _byte_level_family(byte_bpe_tokenizer(corpus), False),
        "byte_bpe_bos_chat": _byte_level_family(
            byte_bpe_tokenizer(corpus, bos=True, chat_template=CHATML_BOS_TEMPLATE), True
        ),
        "sentencepiece_llama": _sentencepiece_family(model_path, legacy=False),
        "sentencepiece_llama_legacy": _sentencepiece_family(model_path, legacy=True),
    }


def _parts(use_chat_template: bool = False, **fields: Any) -> PromptParts:
    values = dict(instructions="Read this.", needle="The key is red.", question="What is the key?",
                  answer_prefix="The key is", system_prompt=None, use_chat_template=use_chat_template)
    return PromptParts(**{**values, **fields})


def _decode(tokenizer: Any, token_ids) -> str:
    return tokenizer.decode(list(token_ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _spans(prompt: BuiltPrompt) -> list[tuple[int, int]]:
    return [(prompt.regions[name].token_start, prompt.regions[name].token_end) for name in REGION_NAMES]


# hand-built: one token per GPT-2 pre-token, so every offset below is counted by hand
_SENTENCES = ["One two three.", "Four five.", "Six seven eight nine.", "Ten eleven."]
_HEAD = "Read this.\n\n"  # Read | Ġthis | . | ĊĊ -> 4 tokens
# Ċ | Ċ | Question | : | ĠWhat | Ġis | Ġthe | Ġkey | ? | Ċ | Answer | : | ĠThe | Ġkey | Ġis -> 15 tokens
_TAIL = "\n\nQuestion: What is the key?\nAnswer: The key is"
# fragments: " One two three." 4, " Four five." 3, " Six seven eight nine." 5, " Ten eleven." 3; needle 5


@pytest.fixture(scope="module")
def word_level():
    return word_level_tokenizer([_HEAD, _TAIL, " red", " The key is red.", " And so on.",
                                 *(" " + s for s in _SENTENCES)])


@pytest.mark.parametrize(
    ("depth", "expected_before_tokens"), [(0.0, 0), (0.25, 4), (0.5, 7), (0.6, 7), (0.99, 12), (1.0, 12)]
)
def test_exact_offsets_without_template(word_level, depth, expected_before_tokens):
    prompt = build_prompt(word_level, _parts(), iter(_SENTENCES), 36, depth)
    before_end = 4 + expected_before_tokens
    assert _spans(prompt) == [(0, 4), (4, before_end), (before_end, before_end + 5), (before_end + 5, 21), (21, 36)]
    assert prompt.achieved_depth == pytest.approx(expected_before_tokens / 12)
    assert prompt.requested_depth == depth
    pieces = [" One two three.", " Four five.", " Six seven eight nine."]
    pieces.insert([0, 4, 7, 12].index(expected_before_tokens), " The key is red.")
    assert _decode(word_level, prompt.input_ids) == _HEAD + "".join(pieces) + _TAIL


def test_filler_opens_the_haystack_or_the_sentence_is_dropped_within_tolerance(word_level):
    prompt = build_prompt(word_level, _parts(), iter(_SENTENCES), 34, 1.0)
    assert prompt.prompt_tokens == 34 and prompt.filler_tokens == 3  # " Six seven eight nine." (5) does not fit
    assert _spans(prompt)[2:] == [(14, 19), (19, 19), (19, 34)]  # 3 filler tokens, then 4+3 tokens
    # content-free filler, never a cut-off piece of the sentence; the needle at depth 1.0 follows a whole sentence
    assert _decode(word_level, prompt.input_ids[4:19]) == " And so. One two three. Four five. The key is red."
    short = build_prompt(word_level, _parts(), iter(_SENTENCES), 34, 1.0, length_tolerance_tokens=3)
    assert short.prompt_tokens == 31 and short.length_tolerance_tokens == 3
    assert _spans(short)[2:] == [(11, 16), (16, 16), (16, 31)]


def test_system_prompt_opens_the_text_without_a_template():
    tokenizer = word_level_tokenizer(["Be brief.\n\n", _HEAD, _TAIL, " The key is red.", " One two three."])
    prompt = build_prompt(tokenizer, _parts(system_prompt="Be brief."), iter(_SENTENCES), 9 + 4 + 5 + 15, 0.0)
    assert _spans(prompt)[:3] == [(0, 9), (9, 9), (9, 14)]  # Be Ġbrief . Ċ Ċ Read Ġthis . ĊĊ
    assert _decode(tokenizer, prompt.input_ids).startswith("Be brief.\n\nRead this.\n\n The key is red. One two three.")


@pytest.mark.parametrize(("depth", "expected_achieved_depth"), [(0.0, 0.0), (0.49, 0.0), (0.5, 1.0), (1.0, 1.0)])
def test_empty_haystack_when_the_context_just_fits(word_level, depth, expected_achieved_depth):
    prompt = build_prompt(word_level, _parts(), iter([]), 24, depth)  # 4 + 5 + 15 tokens, nothing else
    assert _spans(prompt) == [(0, 4), (4, 4), (4, 9), (9, 9), (9, 24)]
    assert prompt.achieved_depth == expected_achieved_depth


def test_exact_offsets_with_chat_template(word_level):
    # the generation prompt sits in an expression: jinja drops a template's final newline
    template = "{% for m in messages %}<|user|>\n{{ m['content'] }}<|end|>\n{% endfor %}{{ '<|assistant|>\n' }}"
    texts = ["\nRead this.\n\n", "a\n\nWhat is the key?", "\n", "\nThe key is", " The key is red.", " One two three."]
    tokenizer = word_level_tokenizer(texts, chat_template=template)
    prompt = build_prompt(tokenizer, _parts(True), iter(_SENTENCES), 6 + 4 + 5 + 14, 0.6)
    # <|user|> Ċ Read Ġthis . ĊĊ | ĠOne Ġtwo Ġthree . | needle |
    # Ċ Ċ What Ġis Ġthe Ġkey ? <|end|> Ċ <|assistant|> Ċ The Ġkey Ġis
    assert _spans(prompt) == [(0, 6), (6, 10), (10, 15), (15, 15), (15, 29)]
    assert _decode(tokenizer, prompt.input_ids) == (
        "<|user|>\nRead this.\n\n One two three. The key is red.\n\nWhat is the key?<|end|>\n<|assistant|>\nThe key is"
    )
    assert _decode(tokenizer, gold_continuation_ids(tokenizer, _parts(True), "red")) == " red"


def test_smollm2_chatml_regions_and_gold(smollm2_tokenizer):
    tokenizer = smollm2_tokenizer
    parts = _parts(
        True, needle="The pass key is 71423.", question="What is the pass key?", answer_prefix="The pass key is"
    )
    prompt = build_prompt(tokenizer, parts, itertools.cycle(["The sky was grey.", "Rain fell all day."]), 160, 0.5)
    head = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nRead this.\n\n")
    preamble, _, needle, _, question = (prompt.regions[name] for name in REGION_NAMES)
    assert prompt.input_ids[: preamble.token_end] == tuple(tokenizer.encode(head, add_special_tokens=False))
    assert _decode(tokenizer, prompt.input_ids[question.token_start :]) == (
        "\n\nWhat is the pass key?<|im_end|>\n<|im_start|>assistant\nThe pass key is"
    )
    assert _decode(tokenizer, prompt.input_ids[needle.token_start : needle.token_end]) == " The pass key is 71423."
    gold = gold_continuation_ids(tokenizer, parts, "71423")
    assert gold == tokenizer.encode(" 71423", add_special_tokens=False)


@pytest.mark.parametrize("family_name", FAMILY_NAMES)
@pytest.mark.parametrize("use_chat_template", [False, True])
@pytest.mark.parametrize("instructions", ["", "Read this."])  # "": the context right after "[INST]" or BOS
def test_whole_sentence_prompt_is_the_tokenizers_own_encoding(families, family_name, use_chat_template, instructions):
    """No join artefacts: with whole sentences the ids are what the tokenizer makes of the prompt text."""
    family, tokenizer = families[family_name], families[family_name].tokenizer
    if use_chat_template and not family.has_chat_template:
        pytest.skip("tokenizer without a chat template")
    parts = _parts(use_chat_template, instructions=instructions)
    sentences = generated_corpus(lines=60, seed=7)
    # a tolerance as large as the haystack: the prompt ends on a sentence boundary, never mid-sentence
    ids = list(build_prompt(tokenizer, parts, iter(sentences), 400, 0.4, 300).input_ids)
    if family.sentencepiece is not None:
        assert ids[0] == tokenizer.bos_token_id and tokenizer.bos_token_id not in ids[1:]
        if family.legacy or not use_chat_template:  # transformers 5's Llama puts no ▁ after a special token
            assert ids[1:] == family.sentencepiece.encode(_decode(tokenizer, ids[1:]))
    if not family.legacy:
        assert ids == tokenizer.encode(_decode(tokenizer, ids), add_special_tokens=False)
    text = _decode(tokenizer, ids)
    assert "  " not in text and " \n" not in text  # no stray space where pieces join
    if family.sentencepiece is not None and use_chat_template and not instructions:
        assert "[INST] " + sentences[0] in text


@pytest.mark.parametrize("family_name", ["byte_bpe", "smollm2"])
def test_chat_template_missing_or_too_small_or_dry_haystack_raise(families, family_name):
    tokenizer = families[family_name].tokenizer
    if family_name == "byte_bpe":
        with pytest.raises(PlacementError, match="set `chat_template: false` in the model entry"):
            build_prompt(tokenizer, _parts(True), iter(_SENTENCES), 200, 0.5)
    with pytest.raises(PlacementError, match=r"context_length 20 is too small: .* take \d+ tokens; use at least"):
        build_prompt(tokenizer, _parts(), iter(_SENTENCES), 20, 0.5)
    with pytest.raises(HaystackError, match=r"ran out after 4 sentences \(\d+ tokens\)"):
        build_prompt(tokenizer, _parts(), iter(_SENTENCES), 400, 0.5)
    for bad_depth in (-0.1, 1.5, float("nan")):
        with pytest.raises(PlacementError, match="depth must be a fraction"):
            build_prompt(tokenizer, _parts(), iter(_SENTENCES), 200, bad_depth)


def test_hash_is_sha256_of_little_endian_int32_and_builds_are_deterministic(smollm2_tokenizer):
    builder = PromptBuilder(smollm2_tokenizer)
    sentences = generated_corpus(lines=200, seed=3)
    first = builder.build_prompt(_parts(True), iter(sentences), 512, 0.3)
    again = PromptBuilder(smollm2_tokenizer).build_prompt(_parts(True), iter(sentences), 512, 0.3)
    assert first == again
    assert first.prompt_sha256 == hashlib.sha256(np.asarray(first.input_ids, dtype="<i4").tobytes()).hexdigest()


def test_2048_token_prompt_builds_in_milliseconds_once_warm(smollm2_tokenizer):
    builder = PromptBuilder(smollm2_tokenizer)
    sentences = generated_corpus(lines=400, seed=5)
    builder.build_prompt(_parts(True), iter(sentences), 2048, 0.5)  # warms the sentence cache
    timings = []
    for depth in np.linspace(0.0, 1.0, 21):
        start = time.perf_counter()
        prompt = builder.build_prompt(_parts(True), iter(sentences), 2048, float(depth))
        timings.append(time.perf_counter() - start)
        assert prompt.prompt_tokens == 2048
    assert np.median(timings) < 0.02  # measured ~0.3 ms on one CPU core


# ---- properties -------------------------------------------------------------------------------

_LETTERS = string.ascii_letters + string.digits + "éèàçñöüßøåæœαβγδλжзик"
_WORDS = st.text(alphabet=_LETTERS, min_size=1, max_size=9)
_OPENERS = st.sampled_from(["", "", "(", '"'])
_CLOSERS = st.sampled_from(["", "", "", ",", ".", ";", ":", "!", "?", ")", "'s", "%"])
_DECORATED = st.tuples(_OPENERS, _WORDS, _CLOSERS).map("".join)
_LITERAL_SPECIALS = st.sampled_from(["<s>", "</s>", "<|im_end|>", "<|user|>", "<|bos|>", "[INST]"])
# haystack text: literal special-token strings now and then (they must stay text, never become BOS/EOS)
_SENTENCE = st.lists(
    st.one_of(_DECORATED, _DECORATED, _DECORATED, _LITERAL_SPECIALS), min_size=1, max_size=14
).map(" ".join)
_PLAIN_SENTENCE = st.lists(_DECORATED, min_size=1, max_size=10).map(" ".join)  # task text: trusted, no specials


@st.composite
def _scenarios(draw, with_chat_template: bool) -> dict[str, Any]:
    parts = PromptParts(
        instructions=draw(st.sampled_from(["", "Read the text below and answer the question."])),
        needle=draw(_SENTENCE),
        question="Quxq " + draw(_PLAIN_SENTENCE),  # a word no other text has: the question is found only where it is
        answer_prefix=draw(st.sampled_from(["", "The answer is"])),
        system_prompt=draw(st.sampled_from([None, "Be brief."])),
        use_chat_template=draw(st.booleans()) if with_chat_template else False,
        # layout axes (evalkit/prompt/layouts.py): spans must stay exact wherever the question and markers go
        question_position=draw(st.sampled_from(["after", "before", "both"])),
        instruction_position=draw(st.sampled_from(["before", "after"])),
    )
    opener, closer = draw(st.sampled_from([("", ""), ("<document>", "</document>"), ("[BEGIN TEXT]", "[END TEXT]")]))
    parts = dataclasses.replace(parts, context_open=opener, context_close=closer)
    return dict(
        parts=parts,
        sentences=draw(st.lists(_SENTENCE, min_size=1, max_size=12)),
        answer=draw(_WORDS),
        depth=draw(st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0.0, 1.0))),
        extra_tokens=draw(st.integers(-3, 200)),
    )


def _recording(sentences: list[str], consumed: list[str]):
    for sentence in itertools.cycle(sentences):
        consumed.append(sentence)
        yield sentence


def _check_scenario(family: Family, builder: PromptBuilder, scenario: dict[str, Any]) -> None:
    tokenizer, parts, depth = family.tokenizer, scenario["parts"], scenario["depth"]
    with pytest.raises(PlacementError, match=r"take \d+ tokens") as too_small:
        builder.build_prompt(parts, iter(scenario["sentences"]), 1, depth)
    fixed_tokens = int(re.search(r"take (\d+) tokens", str(too_small.value)).group(1))
    context_length = fixed_tokens + scenario["extra_tokens"]
    consumed: list[str] = []
    if scenario["extra_tokens"] < 0:
        with pytest.raises(PlacementError, match=f"context_length {context_length} is too small"):
            builder.build_prompt(parts, _recording(scenario["sentences"], consumed), context_length, depth)
        return
    prompt = builder.build_prompt(parts, _recording(scenario["sentences"], consumed), context_length, depth)
    ids = prompt.input_ids

    # exact length; regions tile [0, N) in order
    assert len(ids) == prompt.prompt_tokens == context_length
    spans = _spans(prompt)
    assert spans[0][0] == 0 and spans[-1][1] == len(ids)
    assert all(end == next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))
    assert all(start <= end for start, end in spans)
    preamble, before, needle, after, question = spans
    _check_context(family, prompt, consumed, parts.needle, depth)

    # the needle span decodes to the needle; no special token anywhere in the context
    assert _decode(tokenizer, ids[needle[0] : needle[1]]).strip() == parts.needle.strip()
    assert set(ids[before[0] : after[1]]).isdisjoint(tokenizer.all_special_ids)
    if tokenizer.encode("a")[0] == tokenizer.bos_token_id:  # a BOS tokenizer: one BOS, first
        assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    preamble_text = _decode(tokenizer, ids[preamble[0] : preamble[1]])
    question_text = _decode(tokenizer, ids[question[0] : question[1]]).strip()
    if parts.instructions:
        region_text = preamble_text if parts.instruction_position == "before" else question_text
        assert parts.instructions in region_text
    # the question sits in the region(s) its position names, and only there
    assert (parts.question in question_text) == (parts.question_position != "before")
    assert (parts.question in preamble_text) == (parts.question_position != "after")
    assert question_text.endswith(parts.answer_prefix)
    assert preamble_text.rstrip().endswith(parts.context_open) and parts.context_close in question_text

    # the gold answer as it follows the prompt: after a newline at line start, else after a space
    gold = builder.gold_continuation_ids(parts, scenario["answer"])
    assert _decode(tokenizer, gold).strip() == scenario["answer"]
    if _decode(tokenizer, ids[question[0] :]).endswith("\n"):
        assert gold == tokenizer.encode(scenario["answer"], add_special_tokens=False, split_special_tokens=True)
    else:
        assert gold == family.reference_ids(scenario["answer"])
    assert prompt.prompt_sha256 == hashlib.sha256(np.asarray(ids, dtype="<i4").tobytes()).hexdigest()


def _check_context(family: Family, prompt: BuiltPrompt, consumed: list[str], needle_text: str, depth: float) -> None:
    """The context is the reference encoding of whole sentences fitted to length, the needle at the best boundary.

    When the next sentence does not fit, content-free filler of exactly the missing tokens opens the haystack
    (never a cut-off piece of a sentence); the rest are whole consumed sentences, in order. The filler counts as
    no unit: depth is position among the whole sentences.
    """
    _, before, _, after, _ = _spans(prompt)
    ids = prompt.input_ids
    before_tokens, haystack_tokens = before[1] - before[0], (before[1] - before[0]) + (after[1] - after[0])
    filler = filler_ids(family.reference_ids, prompt.filler_tokens, "words")
    assert sum(map(len, filler)) == prompt.filler_tokens
    filler_text = _decode(family.tokenizer, list(itertools.chain.from_iterable(filler)))
    assert re.fullmatch(r"[A-Za-z .]*", filler_text) and not filler_text.strip("And so on forth as usual.")
    pieces = list(filler)
    whole_tokens = prompt.filler_tokens
    for sentence in consumed:  # the whole sentences that follow the filler
        if whole_tokens >= haystack_tokens:
            break
        pieces.append(family.reference_ids(sentence))
        whole_tokens += len(pieces[-1])
    assert whole_tokens == haystack_tokens  # whole sentences only: nothing was cut
    haystack = list(itertools.chain.from_iterable(pieces))
    needle_ids = family.reference_ids(needle_text)
    assert list(ids[before[0] : after[1]]) == (
        haystack[:before_tokens] + needle_ids + haystack[before_tokens:haystack_tokens]
    )
    # the filler is no unit: the needle goes between whole sentences (or before the filler), at the boundary
    # nearest depth * the sentences' tokens, and achieved_depth is the sentences' share before it
    offsets = list(itertools.accumulate((len(p) for p in pieces), initial=0))
    units_follow = len(pieces) > len(filler)  # filler alone is the haystack
    places = [0, *offsets[len(filler) + 1:]] if units_follow else offsets
    boundaries = [place - prompt.filler_tokens if place else 0 for place in places] if units_follow else offsets
    assert before_tokens in places
    k = places.index(before_tokens)
    target = depth * boundaries[-1]
    assert all(abs(boundaries[k] - target) <= abs(b - target) + 1e-9 for b in boundaries)  # the closest boundary
    adjacent = [b - a for a, b in zip(boundaries, boundaries[1:])][max(k - 1, 0) : k + 1]
    assert abs(boundaries[k] - target) <= max(adjacent, default=0)
    if boundaries[-1]:
        assert prompt.achieved_depth == pytest.approx(boundaries[k] / boundaries[-1])
    if depth == 0.0:
        assert before_tokens == 0
    if depth == 1.0:
        assert after[1] == after[0]


@pytest.mark.parametrize("family_name", FAMILY_NAMES)
def test_placement_properties(families, family_name):
    family = families[family_name]
    builder = PromptBuilder(family.tokenizer)
    examples: list[int] = []

    @settings(max_examples=EXAMPLES_PER_FAMILY, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(scenario=_scenarios(family.has_chat_template))
    def check(scenario):
        examples.append(1)
        _check_scenario(family, builder, scenario)

    check()
    print(f"{family_name}: {len(examples)} hypothesis examples")
    assert len(examples) >= EXAMPLES_PER_FAMILY


def test_layouts_move_the_question_instructions_and_markers_only(smollm2_tokenizer):
    """Hand-checked text of each layout without a template; the default layout is the original prompt."""
    sentences = ["One two three."]

    def text(**layout: str) -> str:
        parts = dataclasses.replace(_parts(), **layout)
        prompt = PromptBuilder(smollm2_tokenizer).build_prompt(parts, iter(sentences), 200, 0.0, 200)
        return _decode(smollm2_tokenizer, prompt.input_ids)

    assert text() == _HEAD + " The key is red. One two three." + _TAIL
    assert text(question_position="before") == (
        "Read this.\n\nQuestion: What is the key?\n\n The key is red. One two three.\n\nAnswer: The key is")
    assert text(question_position="both", instruction_position="after", context_open="<d>", context_close="</d>") == (
        "Question: What is the key?\n\n<d>\n\n The key is red. One two three.\n\n</d>\n\nRead this.\n\n"
        "Question: What is the key?\nAnswer: The key is")
