"""Mitigations as experiment arms, the config side: the ``mitigations:`` list of an eval config.

Every arm runs on exactly the trials the baseline ``none`` runs (same model, task, sample, context length,
depth and control), so an arm's records pair one-to-one with the baseline's and the paired statistics apply::

    mitigations:
      - none                                   # the baseline (always first when given)
      - reorder_by_relevance                   # BM25: the documents most similar to the question last
      - {arm: mask_heads, heads: [[3, 1], [5, 0]]}                 # zero these (layer, head) outputs
      - {arm: mask_heads, name: top4, top_k: 4}                     # this run's top retrieval heads (baseline)
      - {arm: mask_heads, name: top4b, from_run: runs/base, top_k: 4}  # a previous run's top retrieval heads
      - {arm: mask_heads, name: random4, random_k: 4, seed: 0}         # the control: 4 seeded random heads
      - attention_sort                         # pass 1's attention per document orders pass 2 (capture on)
      - {arm: calibrate_attention, strength: 1.0}  # Found in the Middle: a content-free probe's positional
                                                   # bias divided out of the answer rows' attention (capture on)

A plain string is ``{arm: <string>}``. ``name`` (default: the arm) is what records and reports call the
arm; each name appears once. An arm at its defaults with name ``none`` is the baseline, whose trial ids are
the ids evalkit gave before arms existed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

BASELINE = "none"
# arms that act inside the model (hooks on its modules): refused on a backend that cannot capture attention
IN_MODEL_ARMS = frozenset({"mask_heads", "attention_sort", "calibrate_attention"})
# arms that read attention per document, so need ``attention.capture: true`` and a documents task
DOCUMENT_ATTENTION_ARMS = ("attention_sort", "calibrate_attention")
# what a content-free probe document says (Found in the Middle: a document with no information in it)
CONTENT_FREE_TEXT = "This passage is left blank on purpose and says nothing about the question."


class _Arm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field("", description="what records and reports call this arm (default: the arm)")

    @property
    def label(self) -> str:
        """The arm's name in records (``mitigation``) and reports."""
        return self.name or self.arm  # type: ignore[attr-defined]

    def id_payload(self) -> dict[str, Any]:
        """What enters the trial ids of this arm: the arm and its options (the name only labels it)."""
        return self.model_dump(mode="json", exclude={"name"})


class NoMitigation(_Arm):
    """The baseline: the prompt and the model as they are."""

    arm: Literal["none"] = "none"


class ReorderByRelevance(_Arm):
    """Documents reordered by BM25 similarity to the question, the most similar nearest the question (last)."""

    arm: Literal["reorder_by_relevance"] = "reorder_by_relevance"


class MaskHeads(_Arm):
    """Zero the output of attention heads: listed ones, a previous run's top retrieval heads, or random ones."""

    arm: Literal["mask_heads"] = "mask_heads"
    heads: list[Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2, max_length=2)]] = Field(
        default_factory=list, description="[layer, head] pairs to zero")
    from_run: str | None = Field(None, description="run directory with captured attention whose top_k heads are "
                                 "taken (default: this run's own baseline trials, run before this arm)")
    top_k: int = Field(0, ge=0, le=4096, description="how many heads, most copy events first (from from_run, or "
                       "from this run's baseline when from_run is not given)")
    random_k: int = Field(0, ge=0, le=4096, description="this many heads drawn at random (seeded): the control")
    seed: int = Field(0, description="seed of the random heads")

    @model_validator(mode="after")
    def _one_source(self) -> MaskHeads:
        sources = [bool(self.heads), self.top_k > 0, self.random_k > 0]
        if self.from_run is not None and self.top_k == 0:
            raise ValueError("from_run needs top_k (e.g. from_run: runs/base, top_k: 4)")
        if sum(sources) != 1:
            raise ValueError("give exactly one of heads: [[layer, head], ...], top_k: K (with from_run: RUN_DIR, or "
                             "this run's baseline), or random_k: K")
        return self

    @property
    def from_this_run(self) -> bool:
        """Whether the top_k heads come from this run's own baseline trials (no ``from_run``)."""
        return self.top_k > 0 and self.from_run is None


class AttentionSort(_Arm):
    """Two passes: the attention each document gets at the answer step orders them (most attended last) for
    the second pass, which answers (Peysakhovich & Lerer 2023). Needs ``attention.capture: true``."""

    arm: Literal["attention_sort"] = "attention_sort"


class CalibrateAttention(_Arm):
    """Found in the Middle (Hsieh et al. 2024): a first pass on the same prompt with every document replaced by
    a content-free one of about its length measures each position's attention (the positional bias); the
    answer pass subtracts ``strength * log(bias)`` from the logits of each document's keys at the answer rows
    of the chosen ``layers`` (default: the later half, as the paper's last 16 of 32), so the softmax renormalises what is left (``attention/calibration.py``). Needs
    ``attention.capture: true``; ``strength: 0`` is the baseline exactly."""

    arm: Literal["calibrate_attention"] = "calibrate_attention"
    strength: float = Field(1.0, ge=0.0, le=10.0, description="how much of the bias to divide out (1: all of it)")
    layers: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="the layers calibrated (0-based; default: the later half, as Found in the Middle)")
    content_free_text: str = Field(CONTENT_FREE_TEXT, min_length=1,
                                   description="what the probe's documents say, repeated to each one's length")


Mitigation = Annotated[Union[NoMitigation, ReorderByRelevance, MaskHeads, AttentionSort, CalibrateAttention],
                       Field(discriminator="arm")]
ARM_NAMES = ("none", "reorder_by_relevance", "mask_heads", "attention_sort", "calibrate_attention")


def expand_arm_shorthand(value: Any) -> Any:
    """``- reorder_by_relevance`` is shorthand for ``- {arm: reorder_by_relevance}``."""
    if isinstance(value, list):
        return [{"arm": item} if isinstance(item, str) else item for item in value]
    return value


def check_arm_names(arms: list[Any]) -> None:
    """ValueError when two arms share a name (their records could not be told apart) or the baseline repeats."""
    baselines = [index for index, arm in enumerate(arms) if arm.arm == BASELINE]
    if len(baselines) > 1:
        raise ValueError(f"mitigations[{baselines[0]}] and mitigations[{baselines[1]}] are both the baseline "
                         "(arm: none); list it once")
    seen: dict[str, int] = {}
    for index, arm in enumerate(arms):
        if arm.label in seen:
            raise ValueError(f"mitigations[{seen[arm.label]}] and mitigations[{index}] are both named "
                             f"{arm.label!r}; give one a distinct name: (e.g. name: {arm.label}_2)")
        seen[arm.label] = index


def arm_variant(arm: Any) -> dict[str, Any] | None:
    """What the arm adds to a trial id: None for the baseline, so its trials keep evalkit's older ids."""
    return None if arm.arm == BASELINE else arm.id_payload()


def check_same_run_heads(arms: list[Any], index: int, capture: bool) -> None:
    """ValueError unless arm ``index`` (top_k heads from this run) can read them: attention is captured and the
    baseline, whose arrays give the heads, is listed (and so runs) before it."""
    if not capture:
        raise ValueError(f"mitigations[{index}]: top_k without from_run reads this run's attention arrays; set "
                         "attention: {capture: true}, or give from_run: RUN_DIR")
    if not any(arm.arm == BASELINE for arm in arms[:index]):
        raise ValueError(f"mitigations[{index}]: top_k without from_run takes the heads from this run's baseline; "
                         "list - none before this arm, or give from_run: RUN_DIR")
