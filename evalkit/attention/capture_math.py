"""Row-wise attention mass over key regions, recomputed for a few query rows (no model code here).

Used by ``evalkit.attention.capture``; pure tensor functions so they can be tested on hand-built inputs.

Conventions (those of transformers' attention functions):
- ``query [B, H, Lq, D]``, ``key [B, Hkv, Lk, D]``; query head ``h`` reads key head ``h // (H // Hkv)`` (GQA).
- Mask kinds, mirroring what the inner kernel does with the mask it receives:
  * 4-D bool ``[B|1, 1|H, Lq, Lk]``: True = attend (sdpa with padding or sliding layers);
  * 4-D float: additive (eager);
  * 2-D ``[B, >=Lk]`` padding mask, 1 = real token (flash): lower-right causal + sliding window on top;
  * ``None``: sdpa -> upper-left causal when ``Lq > 1`` (no mask at all when ``Lq == 1``);
    flash -> lower-right causal + sliding window; eager -> no mask.
- Softcap ``tanh(x / softcap) * softcap`` is applied to the scaled logits before the mask; sinks (``s_aux``, one
  logit per head) join the softmax denominator only, so masses then sum to less than 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

# (key_start, key_end) -> bias [B, 1|Hkv, G*Q, C], None (nothing masked) or ALL_MASKED (the chunk can be skipped)
MaskBias = Callable[[int, int], "torch.Tensor | str | None"]
ALL_MASKED = "all-masked"

KERNEL_SDPA = "sdpa"
KERNEL_FLASH = "flash"
KERNEL_EAGER = "eager"


def kernel_kind(inner: str) -> str:
    """Map an inner attention name to the masking behaviour its kernel has (``sdpa``, ``flash`` or ``eager``)."""
    if "flash" in inner:
        return KERNEL_FLASH
    if "sdpa" in inner:
        return KERNEL_SDPA
    return KERNEL_EAGER


def _rows_by_group(rows: torch.Tensor, group: int) -> torch.Tensor:
    """``[B, Q]`` row indices -> ``[B, G*Q]`` where entry ``g*Q + q`` is ``rows[:, q]`` (the G*Q layout below)."""
    return rows.repeat(1, group)


def _gather_mask_rows(mask: torch.Tensor, rows: torch.Tensor, group: int, k_len: int) -> torch.Tensor:
    """Select the query rows of a 4-D mask: ``[B|1, 1|H, Lq, >=Lk]`` -> ``[B, 1|Hkv, G*Q, Lk]``."""
    batch, n_rows = rows.shape
    mask = mask[..., :k_len]
    mask = mask.expand(batch, -1, -1, -1)
    if mask.shape[1] == 1:  # one mask for every head
        index = _rows_by_group(rows, group)[:, None, :, None].expand(batch, 1, group * n_rows, k_len)
        return mask.gather(2, index)
    heads = mask.shape[1]  # per-head mask: [B, H, Q, Lk] -> [B, Hkv, G*Q, Lk]
    index = rows[:, None, :, None].expand(batch, heads, n_rows, k_len)
    return mask.gather(2, index).reshape(batch, heads // group, group * n_rows, k_len)


def mask_bias(
    kind: str,
    attention_mask: torch.Tensor | None,
    rows: torch.Tensor,
    q_len: int,
    k_len: int,
    group: int,
    *,
    sliding_window: int | None = None,
    is_causal: bool = True,
    row_span: tuple[int, int] | None = None,
) -> MaskBias:
    """Additive float32 bias for the chosen rows, as the ``kind`` kernel applies ``attention_mask``.

    ``rows [B, Q]`` index the ``Lq`` query positions of this call; ``row_span`` (their min and max, as Python
    ints, so no device sync is needed) lets position rules skip chunks that no row can see or build no bias for
    chunks that every row sees. The returned function gives the bias of the key chunk ``[start, end)``
    (0 = attend, -inf or a large negative number = masked), None for no masking, or ALL_MASKED.
    """
    if attention_mask is not None and attention_mask.dim() == 4:
        selected = _gather_mask_rows(attention_mask, rows, group, k_len)  # [B, 1|Hkv, G*Q, Lk]
        if selected.dtype == torch.bool:
            zero = torch.zeros((), dtype=torch.float32, device=selected.device)
            bias = torch.where(selected, zero, float("-inf"))
        else:
            bias = selected.float()
        return lambda start, end: bias[..., start:end]

    if kind == KERNEL_EAGER or not is_causal:
        if attention_mask is not None:  # only flash receives 2-D masks; anything else is a bug upstream
            raise ValueError(f"unexpected {attention_mask.dim()}-D attention mask for a {kind} kernel")
        return lambda start, end: None
    if kind == KERNEL_SDPA and q_len == 1:
        return lambda start, end: None  # sdpa decode: attends every key it receives

    # position rules: sdpa aligns causality upper-left, flash lower-right (the same when Lq == Lk)
    shift = k_len - q_len if kind == KERNEL_FLASH else 0
    q_pos = (_rows_by_group(rows, group) + shift)[:, None, :, None]  # [B, 1, G*Q, 1] in key-index space
    window = sliding_window if kind == KERNEL_FLASH else None
    padding = None
    if attention_mask is not None:  # flash: 2-D padding mask aligned on the right with the keys
        padding = attention_mask[:, -k_len:].bool()[:, None, None, :]  # [B, 1, 1, Lk]

    def bias_of(start: int, end: int) -> torch.Tensor | str | None:
        if row_span is not None:
            lowest, highest = row_span[0] + shift, row_span[1] + shift
            if start > highest or (window is not None and end - 1 <= lowest - window):
                return ALL_MASKED  # after every row, or before every row's window
            if padding is None and end - 1 <= lowest and (window is None or start > highest - window):
                return None  # inside every row's view
        k_pos = torch.arange(start, end, device=rows.device)  # [C]
        keep = k_pos <= q_pos
        if window is not None:
            keep = keep & (k_pos > q_pos - window)
        if padding is not None:
            keep = keep & padding[..., start:end]
        zero = torch.zeros((), dtype=torch.float32, device=rows.device)
        return torch.where(keep, zero, float("-inf"))

    return bias_of


def region_mass(
    query_rows: torch.Tensor,
    key: torch.Tensor,
    bounds: torch.Tensor,
    scaling: float,
    bias: MaskBias,
    *,
    softcap: float | None = None,
    sinks: torch.Tensor | None = None,
    chunk_tokens: int = 4096,
) -> torch.Tensor:
    """Attention mass of each selected query row on each key region, in float32.

    query_rows [B, H, Q, D] (rows already selected), key [B, Hkv, Lk, D], bounds [B, R, 2] half-open key-index
    intervals within [0, Lk]. Returns [B, H, Q, R]. Two passes over key chunks of ``chunk_tokens`` (max and
    denominator, then mass): the working set is O(H * Q * chunk_tokens) plus O(Q * Lk) for the row masks; each
    region sum is a difference of two prefix sums, so the cost per row is O(Lk + R) whatever R.
    """
    return region_mass_argmax(
        query_rows, key, bounds, scaling, bias, softcap=softcap, sinks=sinks, chunk_tokens=chunk_tokens
    )[0]


def _visible_chunks(bias: MaskBias, k_len: int, chunk_tokens: int) -> list[tuple[int, int, Any]]:
    """Key chunks ``(start, end, bias)``; chunks that no row can see are left out of both passes."""
    chunks = []
    for start in range(0, k_len, chunk_tokens):
        end = min(start + chunk_tokens, k_len)
        extra = bias(start, end)
        if not (isinstance(extra, str) and extra == ALL_MASKED):
            chunks.append((start, end, extra))
    return chunks


def _prefix_sums_at(probs: torch.Tensor, offsets: torch.Tensor, width: int, shape: torch.Size) -> torch.Tensor:
    """Sums of ``probs`` (one chunk, ``width`` keys) before each boundary ``offsets`` (clamped into the chunk)."""
    cumulative = torch.nn.functional.pad(probs.cumsum(-1), (1, 0))  # [B, Hkv, G*Q, C+1], 0 first
    return cumulative.gather(-1, offsets.clamp(0, width).expand(*shape))


def _first_pass(chunks: list[tuple[int, int, Any]], logits: Callable[..., torch.Tensor], shape: tuple[int, ...],
                device: torch.device, sink: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Running max, softmax denominator (rescaled online chunk by chunk) and strongest key index per row.

    Probabilities are taken relative to the max (as eager's softmax does): a log-sum-exp of large logits
    would lose float32 digits. The sink column joins the denominator but is never a strongest key.
    """
    row_max = torch.full(shape, float("-inf"), device=device)
    denominator = torch.zeros_like(row_max)  # [B, Hkv, G*Q]
    best = torch.full_like(row_max, float("-inf"))  # strongest key logit so far
    best_index = torch.full(shape, -1, dtype=torch.long, device=device)

    def absorb(scores: torch.Tensor) -> None:
        nonlocal row_max, denominator
        new_max = torch.maximum(row_max, scores.amax(-1))
        reference = new_max.masked_fill(new_max == float("-inf"), 0.0)  # nothing attendable yet: avoid inf - inf
        denominator = denominator * torch.exp(row_max - reference) + torch.exp(scores - reference[..., None]).sum(-1)
        row_max = new_max

    for start, end, extra in chunks:
        scores = logits(start, end, extra)
        absorb(scores)
        chunk_best, chunk_index = scores.max(-1)
        better = chunk_best > best  # strict: an earlier chunk keeps a tie, as argmax keeps the first index
        best = torch.where(better, chunk_best, best)
        best_index = torch.where(better, chunk_index + start, best_index)
    if sink is not None:
        absorb(sink)
    return row_max, denominator, best_index


def region_mass_argmax(
    query_rows: torch.Tensor,
    key: torch.Tensor,
    bounds: torch.Tensor,
    scaling: float,
    bias: MaskBias,
    *,
    softcap: float | None = None,
    sinks: torch.Tensor | None = None,
    chunk_tokens: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``region_mass`` plus each row's strongest key: ``(mass [B, H, Q, R], argmax [B, H, Q])``.

    ``argmax`` is the key index (in ``[0, Lk)``) of the largest attention weight, the first one on ties as
    ``torch.argmax`` gives it, -1 where a row sees no key. It comes from the first pass at no extra pass.
    """
    mass, argmax, _ = region_mass_argmax_tokens(query_rows, key, bounds, scaling, bias, softcap=softcap, sinks=sinks,
                                                chunk_tokens=chunk_tokens, tokens=False)
    return mass, argmax


def region_mass_argmax_tokens(
    query_rows: torch.Tensor,
    key: torch.Tensor,
    bounds: torch.Tensor,
    scaling: float,
    bias: MaskBias,
    *,
    softcap: float | None = None,
    sinks: torch.Tensor | None = None,
    chunk_tokens: int = 4096,
    tokens: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``region_mass_argmax`` plus, with ``tokens``, each row's probability on every key averaged over the query
    heads: ``token_mass [B, Q, Lk]`` float32 (0 for masked keys), from the same second pass (no extra pass).

    Summing ``token_mass`` over a region's keys gives that region's ``mass`` averaged over heads.
    """
    batch, heads, n_rows, dim = query_rows.shape
    kv_heads, k_len = key.shape[1], key.shape[2]
    group = heads // kv_heads
    q = query_rows.float().reshape(batch, kv_heads, group * n_rows, dim)  # [B, Hkv, G*Q, D]

    def logits(start: int, end: int, extra: torch.Tensor | None) -> torch.Tensor:  # [B, Hkv, G*Q, C]
        scores = torch.matmul(q, key[:, :, start:end].float().transpose(-1, -2)) * scaling
        if softcap is not None:
            scores = torch.tanh(scores / softcap) * softcap
        return scores if extra is None else scores + extra

    chunks = _visible_chunks(bias, k_len, chunk_tokens)

    # pass 1: running max and softmax denominator, and each row's strongest key
    sink = None
    if sinks is not None:  # the sink takes a share of the denominator but belongs to no key
        sink = sinks.float().reshape(1, kv_heads, group, 1).expand(batch, kv_heads, group, n_rows)
        sink = sink.reshape(batch, kv_heads, group * n_rows, 1)
    row_max, denominator, best_index = _first_pass(chunks, logits, (batch, kv_heads, group * n_rows), q.device, sink)
    reference = row_max.masked_fill(row_max == float("-inf"), 0.0)[..., None]  # [B, Hkv, G*Q, 1]

    # pass 2: prefix sums of probabilities, read at every region boundary
    flat_bounds = bounds.to(q.device).reshape(batch, 1, 1, -1)  # [B, 1, 1, 2R]
    prefix = torch.zeros((batch, kv_heads, group * n_rows, flat_bounds.shape[-1]), device=q.device)
    # per key, mean over the H query heads (skipped chunks stay 0: no row sees them)
    token_mass = torch.zeros((batch, n_rows, k_len), device=q.device) if tokens else None  # [B, Q, Lk]
    for start, end, extra in chunks:
        probs = torch.exp(logits(start, end, extra) - reference) / denominator[..., None]  # [B, Hkv, G*Q, C]
        prefix += _prefix_sums_at(probs, flat_bounds - start, end - start, prefix.shape)
        if token_mass is not None:
            token_mass[:, :, start:end] = probs.reshape(batch, heads, n_rows, end - start).mean(1)
    mass = prefix[..., 1::2] - prefix[..., 0::2]  # [B, Hkv, G*Q, R]
    argmax = best_index.reshape(batch, kv_heads, group, n_rows).reshape(batch, heads, n_rows)
    mass = mass.reshape(batch, kv_heads, group, n_rows, -1).reshape(batch, heads, n_rows, -1)
    return mass, argmax, token_mass
