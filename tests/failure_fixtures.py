"""Hand-built records that say why facts were missed: failure types, planted look-alikes, content axes."""

from __future__ import annotations

from typing import Any

from report_fixtures import make_record

HOSTILE_DISTRACTOR = "<script>document.title='pwned'</script>The pass key | is 99999."
NEEDLE = "The pass key is 12345."

# per model: depth -> list of failure types, one per sample (a known mix; the middle holds the misses)
MIX = {
    "org/lookalike": {0.0: ["correct"] * 20, 0.5: ["correct"] * 6 + ["distractor"] * 10 + ["absent"] * 2
                      + ["format"] * 2, 1.0: ["correct"] * 19 + ["format"]},
    "org/split": {0.0: ["correct"] * 20, 0.5: ["correct"] * 6 + ["distractor"] * 5 + ["absent"] * 5
                  + ["format"] * 4, 1.0: ["correct"] * 20},
    "org/few": {0.0: ["correct"] * 20, 0.5: ["correct"] * 15 + ["distractor"] * 5, 1.0: ["correct"] * 20},
}


def placed(text: str, value: str, start: int, depth: float) -> dict[str, Any]:
    """A PlacedDistractor as the record stores it."""
    return {"text": text, "value": value, "key": "", "kind": "other_key", "token_start": start,
            "token_end": start + 8, "requested_depth": depth, "achieved_depth": depth}


def distractors_of(hostile: bool = False) -> list[dict[str, Any]]:
    """Two look-alikes: one before the needle (at 20%), one after (at 80%)."""
    first = HOSTILE_DISTRACTOR if hostile else "The pass key is 55555."
    return [placed(first, "99999" if hostile else "55555", 100, 0.2),
            placed("The pass key is 77777.", "77777", 800, 0.8)]


def answer_of(failure: str) -> str:
    return {"correct": "12345", "distractor": "55555", "absent": "31337", "format": "I cannot tell.",
            "partial": "1234", "other_in_prompt": "2024", "truncated": ""}[failure]


def mix_records(mix: dict | None = None, hostile_first: bool = False) -> list[dict[str, Any]]:
    """Records of ``MIX``: sample i at a depth has the i-th failure type; look-alike answers name look-alike 0."""
    records = []
    for model, by_depth in (mix or MIX).items():
        for depth, failures in by_depth.items():
            for sample, failure in enumerate(failures):
                hostile = hostile_first and failure == "distractor" and not records_with(records, "distractor")
                name = model.replace("/", "-")  # a plain file name: attention arrays may be saved under it
                records.append(make_record(
                    trial_id=f"{name}_{depth}_{sample}", model=model, depth=depth, achieved_depth=depth, sample=sample, seed=100 + sample, needle=NEEDLE, correct=failure == "correct",
                    generated=("99999" if hostile else answer_of(failure)), failure=failure,
                    failure_distractor=0 if failure == "distractor" else None, distractors=distractors_of(hostile),
                    distractor_count=2))
    return records


def records_with(records: list[dict[str, Any]], failure: str) -> list[dict[str, Any]]:
    """The records of ``records`` with failure type ``failure``."""
    return [r for r in records if r["failure"] == failure]
