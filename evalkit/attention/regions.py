"""Which key spans one trial's attention is summed over: prompt regions, the sink, generated tokens, bins.

Two sets of regions, in this order (names are the ``region`` values of ``load_attention``):

1. a partition of every key the captured rows can see, in prompt order::

       sink            [0, s)                   the first ``sink_tokens`` tokens (s = min(sink_tokens, preamble end))
       preamble        [s, preamble end)        the preamble minus the sink: the sink is carved out of it
       context_before, needle, context_after, question    the prompt builder's regions, unchanged
       generated       [L, L + decode_steps)    answer tokens fed back at decode rows (empty for the prefill row)

   These tile the keys, so ``1 - sum(partition)`` is the ``remainder`` (float rounding, or an attention sink
   logit that belongs to no key, as in gpt-oss).
2. ``bins`` equal positional bins of the haystack span ``[context_before start, context_after end)``:
   ``bin_00`` ... ``bin_{bins-1}``, edges ``round(start + i * n / bins)``; they overlap the partition (their sum
   is the haystack's mass) and a bin is empty when the haystack has fewer tokens than ``bins``.
3. document tasks only: ``doc_00`` ... ``doc_{K-1}``, each document's span in prompt order
   (``BuiltPrompt.document_spans``); they tile the context regions, so they too overlap the partition.
4. trials with placed look-alikes only: ``distractor_00`` ... , each placed distractor's span in the order drawn
   (``TrialPrompt.distractors``), inside the context regions (``attention/focus.py`` compares them to the needle).
"""

from __future__ import annotations

from dataclasses import dataclass

from evalkit.types import (
    REGION_CONTEXT_AFTER,
    REGION_CONTEXT_BEFORE,
    REGION_NEEDLE,
    REGION_PREAMBLE,
    REGION_QUESTION,
    BuiltPrompt,
)

REGION_SINK = "sink"
REGION_GENERATED = "generated"
REGION_REMAINDER = "remainder"  # not a span: 1 - sum of the partition (a row of load_attention)
PARTITION = (
    REGION_SINK,
    REGION_PREAMBLE,
    REGION_CONTEXT_BEFORE,
    REGION_NEEDLE,
    REGION_CONTEXT_AFTER,
    REGION_QUESTION,
    REGION_GENERATED,
)


def bin_name(index: int) -> str:
    """``3 -> "bin_03"`` (zero-padded so names sort in position order up to 100 bins)."""
    return f"bin_{index:02d}"


def document_region_name(index: int) -> str:
    """``3 -> "doc_03"``: the region of the document at 0-based position ``index`` in the prompt."""
    return f"doc_{index:02d}"


@dataclass(frozen=True)
class RegionLayout:
    """Names and half-open key spans ``[start, end)`` (token positions) of one trial's regions."""

    names: tuple[str, ...]  # PARTITION, then the bins, the documents (document tasks), the distractors
    spans: tuple[tuple[int, int], ...]
    bins: int
    documents: int = 0
    distractors: int = 0

    @property
    def partition_size(self) -> int:
        """How many leading regions tile the keys (the rest are bins, documents and distractors)."""
        return len(self.names) - self.bins - self.documents - self.distractors

    def span(self, name: str) -> tuple[int, int]:
        """The span of region ``name``."""
        return self.spans[self.names.index(name)]


def distractor_region_name(index: int) -> str:
    """``3 -> "distractor_03"``: the region of the placed look-alike ``index`` (in the order drawn)."""
    return f"distractor_{index:02d}"


def region_layout(prompt: BuiltPrompt, bins: int, sink_tokens: int, decode_steps: int,
                  distractor_spans: tuple[tuple[int, int], ...] = ()) -> RegionLayout:
    """The regions of ``prompt`` (see the module docstring); ``bins >= 1``, ``sink_tokens, decode_steps >= 0``;
    ``distractor_spans``: the placed look-alikes' ``[token_start, token_end)``."""
    if bins < 1 or sink_tokens < 0 or decode_steps < 0:
        raise ValueError(f"need bins >= 1, sink_tokens >= 0, decode_steps >= 0; got {bins}, {sink_tokens}, "
                         f"{decode_steps}")
    regions = prompt.regions
    preamble = regions[REGION_PREAMBLE]
    sink_end = min(sink_tokens, preamble.token_end)  # carved out of the preamble only, never the haystack
    length = prompt.prompt_tokens
    spans = [(0, sink_end), (sink_end, preamble.token_end)]
    spans += [(regions[n].token_start, regions[n].token_end)
              for n in (REGION_CONTEXT_BEFORE, REGION_NEEDLE, REGION_CONTEXT_AFTER, REGION_QUESTION)]
    spans.append((length, length + decode_steps))
    start, end = regions[REGION_CONTEXT_BEFORE].token_start, regions[REGION_CONTEXT_AFTER].token_end
    edges = [start + round(i * (end - start) / bins) for i in range(bins + 1)]
    spans += list(zip(edges[:-1], edges[1:]))
    names = PARTITION + tuple(bin_name(i) for i in range(bins))
    documents = prompt.document_spans
    spans += [(span.token_start, span.token_end) for span in documents]
    names += tuple(document_region_name(i) for i in range(len(documents)))
    spans += [(int(start), int(end)) for start, end in distractor_spans]
    names += tuple(distractor_region_name(i) for i in range(len(distractor_spans)))
    return RegionLayout(names, tuple(spans), bins, len(documents), len(distractor_spans))
