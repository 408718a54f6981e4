"""Tokenizer mechanics for token-exact prompts: piece encoding, BOS detection, chat-template frames.

A prompt is assembled from separately encoded pieces whose ids are concatenated; the model gets
those ids and never a re-encoding of decoded text. A piece that sits in the middle of running text
is encoded *after an anchor*: ``ids(anchor + piece)`` minus ``ids(anchor)``, used only when the
anchor's ids are a prefix of the joined ids. That gives the piece the ids it has mid-text in every
family (byte-level BPE folds the leading space into the first word; SentencePiece/Metaspace
tokenizers would otherwise prepend a ``▁`` to every separately encoded piece), and no piece ever
gets a BOS because pieces are encoded with ``add_special_tokens=False``.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evalkit.errors import PlacementError
from evalkit.types import PromptParts

# Texts that end on a token boundary in the families we know; the first whose ids prove to be a
# prefix of the joined ids wins. "a" covers byte-level BPE and SentencePiece; "\n" is a fallback
# for tokenizers whose pre-tokenizer could glue a letter to what follows.
MID_TEXT_ANCHORS: tuple[str, ...] = ("a", "The end.", "\n")

# Stands in for the context while the chat template renders; the rendered text is split here.
CONTEXT_MARKER = "\u27e6evalkit-context-7c1f\u27e7"


def encode_plain(tokenizer: Any, text: str, *, split_special_tokens: bool) -> list[int]:
    """Ids of ``text`` on its own: never BOS/EOS; ``split_special_tokens`` spells out literal ``<s>``."""
    return list(tokenizer.encode(text, add_special_tokens=False, split_special_tokens=split_special_tokens))


def decode_exact(tokenizer: Any, token_ids: Sequence[int]) -> str:
    """Decode ids keeping special tokens and spaces as they are (no clean-up of `` .`` and the like)."""
    return tokenizer.decode(list(token_ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


TOKEN_TEXT_CONTEXT = 4  # tokens decoded before each one, so no decode starts at the token itself
TOKEN_TEXT_PENDING = 8  # tokens one character may span before a token falls back to its lone decode


def token_texts(tokenizer: Any, token_ids: Sequence[int]) -> list[str]:
    """Each token's own text, such that the texts joined are ``decode_exact`` of all the ids.

    A token decoded alone can be wrong: SentencePiece drops the space of a decode's first piece (``▁the`` ->
    ``the``) and byte-level BPE splits a multi-byte character over tokens (each alone decodes to U+FFFD). So a
    token's text is what it adds to the decode of the few tokens before it, and a token that leaves a character
    incomplete gets ``""``: the character goes to the token that completes it. Two short decodes per token.
    """
    ids = list(token_ids)
    texts: list[str] = []
    start, done, emitted = 0, "", 0  # window ids[start:emitted] decodes to ``done``; ids[emitted:] have no text yet
    for k in range(len(ids)):
        text = decode_exact(tokenizer, ids[start : k + 1])
        grows = text.startswith(done)
        if (not grows or text.endswith("\ufffd")) and k + 1 - emitted < TOKEN_TEXT_PENDING:
            texts.append("")  # an incomplete character (or a decode that rewrote the window): wait
            continue
        # past the pending limit (a text of literal U+FFFD, say) the token keeps what it adds, or its lone decode
        texts.append(text[len(done):] if grows else decode_exact(tokenizer, ids[k : k + 1]))
        emitted, start = k + 1, max(start, k + 1 - TOKEN_TEXT_CONTEXT)
        done = decode_exact(tokenizer, ids[start:emitted])
    return texts


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """True when the tokenizer puts a BOS first by default, i.e. ``encode("a")`` starts with it."""
    bos_token_id = getattr(tokenizer, "bos_token_id", None)
    if bos_token_id is None:
        return False
    default_ids = list(tokenizer.encode("a"))
    return bool(default_ids) and default_ids[0] == bos_token_id


def ids_sha256(token_ids: Sequence[int]) -> str:
    """Hex sha256 of the ids packed as little-endian int32 (4 bytes per token, no separator)."""
    return hashlib.sha256(struct.pack(f"<{len(token_ids)}i", *token_ids)).hexdigest()


class AnchoredEncoder:
    """Encodes text pieces as they appear after a preceding text, caching the anchors' own ids."""

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer
        self._anchor_ids: dict[tuple[str, bool], list[int]] = {}

    def encode_after(self, text: str, anchors: Sequence[str], *, split_special_tokens: bool) -> list[int]:
        """Ids of ``text`` right after the first anchor that ends on a token boundary before it.

        Falls back to a plain encode of ``text`` when no anchor's ids are a prefix of the joined ids
        (the join merged tokens); callers verify the result by decoding it.
        """
        for anchor in anchors:
            anchor_ids = self._ids_of_anchor(anchor, split_special_tokens)
            joined_ids = encode_plain(self._tokenizer, anchor + text, split_special_tokens=split_special_tokens)
            prefix_tokens = len(anchor_ids)
            if len(joined_ids) > prefix_tokens and joined_ids[:prefix_tokens] == anchor_ids:
                return joined_ids[prefix_tokens:]
        return encode_plain(self._tokenizer, text, split_special_tokens=split_special_tokens)

    def _ids_of_anchor(self, anchor: str, split_special_tokens: bool) -> list[int]:
        key = (anchor, split_special_tokens)
        if key not in self._anchor_ids:
            self._anchor_ids[key] = encode_plain(self._tokenizer, anchor, split_special_tokens=split_special_tokens)
        return self._anchor_ids[key]


@dataclass(frozen=True)
class FrameText:
    """The prompt text around the context: ``head_text`` + context + ``tail_text``.

    ``head_text`` starts the prompt (template head, system prompt, instructions, blank line);
    ``tail_text`` holds the blank line, question, template tail, generation prompt and answer prefix.
    ``bos_prefix`` says whether a BOS id goes before ``head_text`` (the template-off path only; a
    chat template writes its own BOS into the text).
    """

    head_text: str
    tail_text: str
    bos_prefix: bool


def frame_text(tokenizer: Any, parts: PromptParts, adds_bos: bool) -> FrameText:
    """The text around the context for ``parts``, with or without the model's chat template."""
    instructions = parts.instructions.strip()
    question = parts.question.strip()
    answer_prefix = parts.answer_prefix.strip()
    if not parts.use_chat_template:
        return _plain_frame(parts, instructions, question, answer_prefix, adds_bos)
    rendered = _render_chat(tokenizer, parts, instructions, question)
    head_text, tail_text = rendered.split(CONTEXT_MARKER)
    if answer_prefix:
        # "assistant\n" takes the prefix as is; "[/INST]" needs a space before it
        joiner = "" if not tail_text or tail_text[-1].isspace() else " "
        tail_text = f"{tail_text}{joiner}{answer_prefix}"
    # every context piece brings its own leading space, so the head's trailing blanks would double it
    return FrameText(head_text=head_text.rstrip(" \t"), tail_text=tail_text, bos_prefix=False)


def _plain_frame(parts: PromptParts, instructions: str, question: str, answer_prefix: str, adds_bos: bool) -> FrameText:
    """The template-off frame: blocks joined by ``parts.separator``, the question and answer lines as the task
    frames them (defaults: ``"\n\n"``, ``"Question: {question}\n"``, ``"Answer:"``)."""
    # no system role without a template: a system prompt opens the text, before the instructions
    system_prompt = (parts.system_prompt or "").strip()
    separator = parts.separator
    question_line = parts.question_format.format(question=question) if question else ""
    before, after = _layout_pieces(parts, instructions, question_line.strip())
    head_text = "".join(f"{text}{separator}" for text in (system_prompt, *before) if text)
    if parts.question_position == "before":
        question_line = ""
    after_text = "".join(f"{text}{separator}" for text in after[:-1] if text)  # the question line comes last
    answer = parts.answer_format + (f" {answer_prefix}" if answer_prefix else "")
    tail_text = f"{separator}{after_text}{question_line}{answer}"
    return FrameText(head_text=head_text, tail_text=tail_text, bos_prefix=adds_bos)


def _layout_pieces(parts: PromptParts, instructions: str, question: str) -> tuple[list[str], list[str]]:
    """Texts before the context and after it, in order, as the layout fields of ``parts`` place them.

    The question (if placed after the context) is always the last text after it; empty texts are kept
    so the caller can tell; the defaults give ``[instructions]`` and ``["", "", question]``.
    """
    instructions_before = instructions if parts.instruction_position == "before" else ""
    instructions_after = "" if parts.instruction_position == "before" else instructions
    question_before = question if parts.question_position in ("before", "both") else ""
    question_after = question if parts.question_position in ("after", "both") else ""
    before = [instructions_before, question_before, parts.context_open.strip()]
    return before, [parts.context_close.strip(), instructions_after, question_after]


def _render_chat(tokenizer: Any, parts: PromptParts, instructions: str, question: str) -> str:
    """Render the chat template once with CONTEXT_MARKER in place of the context."""
    if not getattr(tokenizer, "chat_template", None):
        raise PlacementError(
            "use_chat_template is on but this tokenizer has no chat template; "
            "set `chat_template: false` in the model entry"
        )
    before, after = _layout_pieces(parts, instructions, question)
    content = "\n\n".join(text for text in (*before, CONTEXT_MARKER, *after) if text)
    messages = [{"role": "user", "content": content}]
    if parts.system_prompt is not None:
        messages.insert(0, {"role": "system", "content": parts.system_prompt})
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                 **dict(parts.chat_template_kwargs))  # fmt: skip
    except Exception as err:  # jinja raises its own types (TemplateError, exceptions raised by the template)
        raise PlacementError(
            f"the model's chat template rejected the prompt messages ({type(err).__name__}: {err}); "
            "set `system_prompt` to null or `chat_template: false` in the model entry"
        ) from None
    if not isinstance(rendered, str) or rendered.count(CONTEXT_MARKER) != 1:
        raise PlacementError(
            "the model's chat template does not keep the user message intact (the context marker "
            "is missing or repeated); set `chat_template: false` in the model entry"
        )
    return rendered
