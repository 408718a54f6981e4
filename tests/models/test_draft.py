"""Reading greedy tokens off a draft forward (evalkit/models/draft.py, crop limits from forward.py), on hand-made logits."""

from __future__ import annotations

import math

import pytest
import torch

from evalkit.models.draft import answer_draft, greedy_from_draft, tail_after_gold
from evalkit.models.forward import crop_limit

VOCAB = 10


def _logits(choices: list[int]) -> torch.Tensor:
    """[len(choices), VOCAB] logits whose argmax at row j is choices[j]."""
    logits = torch.zeros(len(choices), VOCAB)
    for row, token in enumerate(choices):
        logits[row, token] = 5.0
    return logits


def test_draft_is_gold_then_tail_cut_to_what_is_needed() -> None:
    assert answer_draft([1, 2, 3], [4, 5], max_new_tokens=8) == [1, 2, 3, 4, 5]
    assert answer_draft([1, 2, 3], [4, 5], max_new_tokens=3) == [1, 2]  # 2 drafted give 3 greedy tokens
    assert answer_draft([1, 2, 3, 4, 5], [], max_new_tokens=2) == [1, 2, 3, 4]  # every gold token is scored
    assert answer_draft([7], [], max_new_tokens=1) == []


def test_tail_is_what_follows_the_gold_answer() -> None:
    assert tail_after_gold((1, 2, 3, 9), [1, 2]) == (3, 9)
    assert tail_after_gold((1, 2), [1, 2]) == ()
    assert tail_after_gold((1, 4, 3), [1, 2]) is None


def test_whole_draft_agrees_then_one_more_token() -> None:
    tokens, accepted, finished = greedy_from_draft(_logits([1, 2, 3, 4]), [1, 2, 3], stop_token_ids=[], max_new_tokens=8)
    assert (tokens, accepted, finished) == ([1, 2, 3, 4], 3, False)  # 4 still has to be fed


def test_first_disagreement_ends_what_the_draft_can_tell() -> None:
    tokens, accepted, finished = greedy_from_draft(_logits([1, 5, 3, 4]), [1, 2, 3], stop_token_ids=[], max_new_tokens=8)
    assert (tokens, accepted, finished) == ([1, 5], 1, False)  # row 2 saw draft token 2, not the greedy 5


def test_stop_token_and_length_finish_inside_the_draft() -> None:
    assert greedy_from_draft(_logits([1, 9, 3]), [1, 9], stop_token_ids=[9], max_new_tokens=8) == ([1, 9], 1, True)
    assert greedy_from_draft(_logits([1, 2, 3]), [1, 2], stop_token_ids=[], max_new_tokens=2) == ([1, 2], 1, True)
    assert greedy_from_draft(_logits([9]), [], stop_token_ids=[9], max_new_tokens=4) == ([9], 0, True)


def test_ties_break_to_the_first_index_like_decoding() -> None:
    logits = torch.zeros(1, VOCAB)
    logits[0, [3, 6]] = 1.0
    assert greedy_from_draft(logits, [], [], 4)[0] == [int(logits[0].argmax())] == [3]


def test_crop_limit_by_cache_type() -> None:
    from transformers import DynamicCache, LlamaConfig, MistralConfig

    plain = DynamicCache(config=LlamaConfig(num_hidden_layers=2, hidden_size=16, num_attention_heads=2))
    windowed = DynamicCache(config=MistralConfig(num_hidden_layers=2, hidden_size=16, num_attention_heads=2,
                                                 sliding_window=64))  # fmt: skip
    assert crop_limit(plain) == math.inf
    assert crop_limit(windowed) == 64
    assert crop_limit(object()) == 0


@pytest.mark.parametrize("max_new_tokens", [1, 3])
def test_short_answers_read_from_the_first_rows(max_new_tokens: int) -> None:
    tokens, _, finished = greedy_from_draft(_logits([1, 2, 3]), [1, 2], [], max_new_tokens)
    assert tokens == [1, 2, 3][:max_new_tokens] and finished


def test_extension_pieces_keep_each_piece_within_the_cache_before_it() -> None:
    from evalkit.models.draft import extension_pieces

    assert extension_pieces(0, 4000, 3990, min_piece=512) == []  # a fresh prompt: one causal forward, no mask
    assert extension_pieces(1500, 2060, 2047, min_piece=512) == []  # short extension: one forward
    assert extension_pieces(64, 2060, 2047, min_piece=512) == [(64, 576), (576, 1152)]  # then [1152, 2060)
    assert extension_pieces(64, 2060, 300, min_piece=512) == [(64, 300)]  # capture rows from 300 on
    pieces = extension_pieces(10, 10_000, 9_000, min_piece=16)
    assert all(b - a <= max(a, 16) for a, b in pieces) and pieces[0] == (10, 26)
