"""``token_texts`` (evalkit/prompt/tokenization.py): one text per token, joined they are the exact decode."""

from __future__ import annotations

import pytest
from tokenizer_fixtures import generated_corpus, llama_tokenizer_from_sentencepiece, train_sentencepiece

from evalkit.prompt.tokenization import decode_exact, token_texts

TEXT = "The key is red. café 🎉 naïve  two  spaces ζ 日本 <script>x</script>"


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory):
    return train_sentencepiece(generated_corpus(), tmp_path_factory.mktemp("spm"))


def test_byte_level_pieces_join_to_the_decode_and_a_split_character_sits_on_its_last_token(smollm2_tokenizer):
    ids = smollm2_tokenizer.encode("<|im_start|>user\n" + TEXT + " \ufffd\ufffd ok<|im_end|>", add_special_tokens=False)
    texts = token_texts(smollm2_tokenizer, ids)
    assert len(texts) == len(ids) and "".join(texts) == decode_exact(smollm2_tokenizer, ids)
    assert texts[0] == "<|im_start|>"  # special tokens keep their text
    party = texts.index(" 🎉")  # four UTF-8 bytes over three tokens: the emoji goes to the one that completes it
    assert texts[party - 2: party] == ["", ""] and "\ufffd" not in "".join(texts).replace(" \ufffd\ufffd ok", "")


@pytest.mark.parametrize("legacy", [False, True])
def test_sentencepiece_pieces_keep_their_leading_space(sentencepiece_model, legacy):
    tokenizer = llama_tokenizer_from_sentencepiece(sentencepiece_model, legacy=legacy)
    ids = tokenizer.encode(TEXT)
    texts = token_texts(tokenizer, ids)
    assert "".join(texts) == decode_exact(tokenizer, ids) == "<s> " + TEXT
    assert texts[:3] == ["<s>", " The", " key"]  # decoded alone, "▁The" loses its space
    assert tokenizer.decode(ids[1:2]) == "The"


def test_no_ids_no_texts(smollm2_tokenizer):
    assert token_texts(smollm2_tokenizer, []) == []
