"""Tokenizers built offline for placement tests: trained byte-level BPE, SentencePiece, hand-built word level.

Nothing here touches the network. Trained tokenizers learn from generated pseudo-English that mixes
ASCII and accented/Greek/Cyrillic letters, digits and punctuation, so the property tests meet merges,
byte fallback and multi-byte characters. Each builder is cheap (well under a second); the tests
cache them per session.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

# A ChatML-like template with a BOS of its own, as Llama-3-style templates write it.
CHATML_BOS_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# Llama-2 style: "<s>[INST] <<SYS>>\n...\n<</SYS>>\n\n{user} [/INST]"; trims the user content like Llama-2's.
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set turns = messages[1:] %}{% else %}{% set turns = messages %}{% endif %}"
    "{{ bos_token }}{% for message in turns %}{% if message['role'] == 'user' %}[INST] "
    "{% if loop.first and system is defined %}<<SYS>>\n{{ system }}\n<</SYS>>\n\n{% endif %}"
    "{{ message['content'] | trim }} [/INST]{% else %} {{ message['content'] | trim }} {{ eos_token }}"
    "{% endif %}{% endfor %}"
)

BYTE_BPE_SPECIAL_TOKENS = ["<|endoftext|>", "<|bos|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

_SYLLABLES = (
    "ba be bi bo bu ca ce co da de di do fa fe fi ga ge go ha he hi ka ke ko la le li lo ma me mi mo na ne "
    "ni no pa pe pi po ra re ri ro sa se si so ta te ti to va ve vi wa we za ze ch sh th st tr pl gr ing "
    "ed er an en in on un"
).split()
_COMMON_WORDS = (
    "the a of and to in is was that it for on with as his he by at from her which or had this are "
    "pass key number secret city what question answer read text"
).split()
_RARE_LETTERS = "éèàçñöüßøåæœαβγδλжзик"


def generated_corpus(lines: int = 4000, seed: int = 0) -> list[str]:
    """Deterministic pseudo-English sentences with digits, punctuation and non-ASCII letters."""
    rng = random.Random(seed)

    def word() -> str:
        if rng.random() < 0.4:
            return rng.choice(_COMMON_WORDS)
        text = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3)))
        if rng.random() < 0.08:
            text += rng.choice(_RARE_LETTERS)
        if rng.random() < 0.05:
            text = f"({text})" if rng.random() < 0.5 else f"{text},"
        return text

    def sentence() -> str:
        words = [word() for _ in range(rng.randint(3, 14))]
        if rng.random() < 0.25:
            words.append(str(rng.randint(0, 99_999)))
        return " ".join(words).capitalize() + rng.choice(".!?;")

    return [sentence() for _ in range(lines)]


def byte_bpe_tokenizer(corpus: Iterable[str], *, vocab_size: int = 2000, bos: bool = False, chat_template=None):
    """GPT-2-style byte-level BPE trained on ``corpus``, as a transformers fast tokenizer.

    ``bos``: sequences start with ``<|bos|>`` by default (a TemplateProcessing post-processor).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=BYTE_BPE_SPECIAL_TOKENS,
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    if bos:
        bos_id = backend.token_to_id("<|bos|>")
        backend.post_processor = processors.TemplateProcessing(
            single="<|bos|> $A", pair="<|bos|> $A $B", special_tokens=[("<|bos|>", bos_id)]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|bos|>",
        eos_token="<|endoftext|>",
        additional_special_tokens=BYTE_BPE_SPECIAL_TOKENS[2:],
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def train_sentencepiece(corpus: Iterable[str], folder: Path, *, vocab_size: int = 1000) -> Path:
    """Train a SentencePiece BPE model (byte fallback, Llama ids: unk 0, bos 1, eos 2); returns its path."""
    import sentencepiece as spm

    corpus_path = folder / "corpus.txt"
    corpus_path.write_text("\n".join(corpus), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus_path),
        model_prefix=str(folder / "spm"),
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        split_digits=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    return folder / "spm.model"


def llama_tokenizer_from_sentencepiece(
    model_path: Path, *, legacy: bool = False, chat_template: str | None = LLAMA2_TEMPLATE
):
    """A transformers LlamaTokenizer (BOS added by default) converted from a SentencePiece BPE model.

    ``legacy``: the pipeline of the Llama-2/Mistral ``tokenizer.json`` files on the Hub (a normalizer
    that prepends ``▁`` to every encoded text, so ``" The"`` alone becomes ``▁▁The``); otherwise
    transformers 5's Metaspace pre-tokenizer.

    transformers 5 converts ``tokenizer.model`` files through protobuf, which this environment lacks;
    the vocabulary and merge order come from ``sentencepiece`` itself (merges ranked by the merged
    piece's score, as transformers' own SentencePiece extractor ranks them).
    """
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    processor = spm.SentencePieceProcessor(model_file=str(model_path))
    pieces = [processor.id_to_piece(index) for index in range(processor.get_piece_size())]
    vocab = {piece: index for index, piece in enumerate(pieces)}
    ranked = []
    for index, piece in enumerate(pieces):
        if processor.is_control(index) or processor.is_unknown(index) or processor.is_byte(index):
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((-processor.get_score(index), vocab[left], vocab[right], left, right))
    merges = [(left, right) for *_, left, right in sorted(ranked)]
    tokenizer = LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)
    if legacy:
        from tokenizers import normalizers

        backend = tokenizer.backend_tokenizer
        backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        backend.pre_tokenizer = None
    tokenizer.chat_template = chat_template
    return tokenizer


def word_level_tokenizer(texts: Iterable[str], *, chat_template: str | None = None):
    """Byte-level pre-tokenization with one token per pre-token: token counts can be read off by hand.

    The vocabulary holds exactly the GPT-2 pre-tokens of ``texts`` (plus the anchors a builder may
    use), so ``"Read this.\\n\\n"`` is ``Read | Ġthis | . | ĊĊ``: four tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>"]
    vocab = {token: index for index, token in enumerate(specials)}
    for text in [*texts, "a", "The end.", "\n", "a\n", "\n\n"]:
        for piece, _ in pre_tokenizer.pre_tokenize_str(text):
            vocab.setdefault(piece, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizer
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=specials[3:],
    )
    tokenizer.chat_template = chat_template
    return tokenizer
