"""Prompts of documents tasks: K real documents in a template, the gold one at a chosen index.

Unlike a needle prompt (pieces encoded apart and joined as ids, so the haystack keeps its ids at every depth),
a documents prompt is the task's template filled in as text and encoded once, the way a user's own pipeline
(or Liu et al.'s code) would encode it: with the chat template off, its text is the paper's prompt byte for
byte. The regions still tile the prompt, and ``BuiltPrompt.document_spans`` give each document's span:

    preamble        [BOS] template head and the template text before the documents
    context_before  documents 0 .. g-1      (each with the separator after it)
    needle          document g, the gold one
    context_after   documents g+1 .. K-1
    question        the template text after the documents, template tail, answer prefix

A token belongs to the span its first character falls in (the encoding is checked to decode back to the text).
The closed-book control (no documents) is the task's ``closed_book_template``, all in the question region.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from evalkit.errors import PlacementError
from evalkit.prompt.spans import achieved_depth, tile_regions
from evalkit.prompt.tokenization import (
    CONTEXT_MARKER, AnchoredEncoder, decode_exact, ids_sha256, tokenizer_adds_bos,
)
from evalkit.tasks.document_spec import DocumentsSpec
from evalkit.tasks.documents import Document
from evalkit.types import BuiltPrompt, TokenSpan


@dataclass(frozen=True)
class DocumentFrame:
    """How one model entry frames a documents prompt (the chat template on or off, system prompt, prefix)."""

    use_chat_template: bool
    system_prompt: str | None
    answer_prefix: str
    chat_template_kwargs: tuple[tuple[str, object], ...] = ()


def format_documents(spec: DocumentsSpec, documents: Sequence[Document]) -> list[str]:
    """Each document's text as the prompt shows it (``index`` is 1-based, as in Liu et al.)."""
    return [spec.document_format.format(index=i + 1, title=doc.title, text=doc.text) for i, doc in enumerate(documents)]


def content_free_documents(documents: Sequence[Document], text: str,
                           tokens: Callable[[str], int] = len) -> list[Document]:
    """Each document replaced by ``text`` repeated to its title's and text's lengths in ``tokens`` (default:
    characters), whole words and at least one, so a probe prompt has about the same shape and nothing to find
    in it (Found in the Middle's content-free documents)."""
    words = text.split()

    def filled(target: int) -> str:
        def upto(n: int) -> str:
            return " ".join(words[i % len(words)] for i in range(n))

        low, high = 1, max(1, target)  # every word is at least one token (or character)
        while low < high:  # the fewest words that reach the target
            middle = (low + high) // 2
            low, high = (middle + 1, high) if tokens(upto(middle)) < target else (low, middle)
        return upto(low)

    return [Document(title=filled(tokens(doc.title)) if doc.title else "", text=filled(tokens(doc.text)))
            for doc in documents]


def gold_position(depth: float, total: int) -> int:
    """The gold document's 0-based index for a depth in [0, 1]: ``depth * (total - 1)``, halves rounded up."""
    return int(depth * (total - 1) + 0.5)


def _render(tokenizer: Any, frame: DocumentFrame, user_text: str) -> tuple[str, bool]:
    """The whole prompt text around ``user_text`` and whether a BOS id goes first (template off only)."""
    prefix = frame.answer_prefix.strip()
    if not frame.use_chat_template:
        head = f"{frame.system_prompt.strip()}\n\n" if frame.system_prompt else ""
        return head + user_text + (f" {prefix}" if prefix else ""), tokenizer_adds_bos(tokenizer)
    if not getattr(tokenizer, "chat_template", None):
        raise PlacementError("use_chat_template is on but this tokenizer has no chat template; "
                             "set `chat_template: false` in the model entry")
    messages = [{"role": "user", "content": user_text}]
    if frame.system_prompt is not None:
        messages.insert(0, {"role": "system", "content": frame.system_prompt})
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                 **dict(frame.chat_template_kwargs))
    except Exception as err:  # jinja raises its own types
        raise PlacementError(f"the model's chat template rejected the prompt ({type(err).__name__}: {err}); "
                             "set `system_prompt` to null or `chat_template: false` in the model entry") from None
    joiner = "" if not rendered or rendered[-1].isspace() else " "
    return rendered + (f"{joiner}{prefix}" if prefix else ""), False


def _encode(tokenizer: Any, text: str, bos: bool) -> tuple[list[int], list[int]]:
    """Ids of ``text`` (BOS first if asked) and each id's first character in ``text`` (-1: no character)."""
    if not getattr(tokenizer, "is_fast", False):  # only a tokenizers-backed tokenizer gives character offsets
        raise PlacementError("documents tasks need a fast tokenizer (character offsets); use a model with a "
                             "tokenizer.json")
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, starts = list(encoded["input_ids"]), [s if e > s else -1 for s, e in encoded["offset_mapping"]]
    if bos:
        ids, starts = [tokenizer.bos_token_id, *ids], [-1, *starts]
    if decode_exact(tokenizer, ids[1:] if bos else ids) != text:
        raise PlacementError("the documents prompt does not decode back to its text in this tokenizer; "
                             "this tokenizer rewrites text (normalisation): use another document_format")
    return ids, starts


def _token_boundaries(starts: list[int], char_boundaries: list[int]) -> list[int]:
    """For each character boundary, the first token whose first character lies at or after it."""
    segment, segments = 0, []
    for start in starts:  # a token without characters (BOS, a special token) stays in the segment before it
        if start >= 0:
            segment = bisect_right(char_boundaries, start)
        segments.append(segment)
    return [bisect_right(segments, k) for k in range(len(char_boundaries))]


def build_document_prompt(
    tokenizer: Any, spec: DocumentsSpec, frame: DocumentFrame, question: str, documents: Sequence[Document],
    gold_index: int, context_length: int, depth: float,
) -> BuiltPrompt:
    """The prompt of ``documents`` (the gold one at ``gold_index``) for ``question``, at most ``context_length``
    tokens; PlacementError when it does not fit or does not survive the tokenizer."""
    texts = format_documents(spec, documents)
    context = spec.separator.join(texts)
    user_text = spec.template.format(search_results=CONTEXT_MARKER, question=question)
    full, bos = _render(tokenizer, frame, user_text)
    head = full.split(CONTEXT_MARKER, 1)[0]
    full = full.replace(CONTEXT_MARKER, context, 1)
    doc_starts, offset = [], len(head)
    for text in texts:
        doc_starts.append(offset)
        offset += len(text) + len(spec.separator)
    ids, starts = _encode(tokenizer, full, bos)
    bounds = _token_boundaries(starts, [*doc_starts, len(head) + len(context)])
    spans = tuple(TokenSpan(a, b) for a, b in zip(bounds[:-1], bounds[1:]))
    if len(ids) > context_length:
        raise PlacementError(f"{len(documents)} documents make a prompt of {len(ids)} tokens, above context_length "
                             f"{context_length}; raise context_lengths or lower documents.total")
    special = set(getattr(tokenizer, "all_special_ids", ()) or ()) - {getattr(tokenizer, "unk_token_id", None)}
    if not special.isdisjoint(ids[bounds[0]:bounds[-1]]):
        raise PlacementError("a document's text holds a special token of this tokenizer (e.g. a literal '<s>'); "
                             "clean that document or leave it out of the source")
    gold = spans[gold_index]
    before, after = gold.token_start - bounds[0], bounds[-1] - gold.token_end
    regions = tile_regions(bounds[0], before, gold.length, after, len(ids) - bounds[-1])
    return BuiltPrompt(
        input_ids=tuple(ids), regions=regions, needle_text=texts[gold_index], requested_context_length=context_length,
        length_tolerance_tokens=context_length, requested_depth=float(depth),
        achieved_depth=achieved_depth(before, before + after, depth), prompt_sha256=ids_sha256(ids),
        document_spans=spans,
    )


def build_closed_book_prompt(
    tokenizer: Any, spec: DocumentsSpec, frame: DocumentFrame, question: str, context_length: int,
) -> BuiltPrompt:
    """The closed-book control: ``closed_book_template`` alone (no documents), all of it the question region."""
    full, bos = _render(tokenizer, frame, spec.closed_book_template.format(question=question))
    ids, _ = _encode(tokenizer, full, bos)
    preamble = 1 if bos else 0
    return BuiltPrompt(
        input_ids=tuple(ids), regions=tile_regions(preamble, 0, 0, 0, len(ids) - preamble), needle_text="",
        requested_context_length=context_length, length_tolerance_tokens=context_length,
        requested_depth=float("nan"), achieved_depth=float("nan"), prompt_sha256=ids_sha256(ids),
    )


def gold_ids_after(tokenizer: Any, prompt: BuiltPrompt, answer: str) -> tuple[int, ...]:
    """Ids of the gold ``answer`` as they follow ``prompt`` (no space after a line break, else one)."""
    answer = answer.strip()
    tail = decode_exact(tokenizer, prompt.input_ids[-8:])  # ends on a token boundary: an anchor for the answer
    joiner = "" if tail and tail[-1].isspace() else " "
    gold = AnchoredEncoder(tokenizer).encode_after(joiner + answer, (tail,), split_special_tokens=True)
    if not answer or decode_exact(tokenizer, gold).strip() != answer:
        raise PlacementError(f"gold answer {answer!r} does not survive this tokenizer; use another alias first")
    return tuple(gold)


def document_prompt_text(spec: DocumentsSpec, question: str, documents: Sequence[Document]) -> str:
    """The template-off prompt text (no system prompt, no answer prefix): Liu et al.'s prompt for these inputs."""
    return spec.template.format(search_results=spec.separator.join(format_documents(spec, documents)),
                                question=question)
