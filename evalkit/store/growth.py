"""A run grows by its sample count: a rerun of the same config with more ``samples`` resumes into the run.

A trial's id and seed depend on its sample index, not on how many samples the config asks for
(``config/trial_ids.py``), so under ``samples: m`` samples ``0..n-1`` are the very trials a run of ``samples: n``
recorded. When a header's config and the new one differ in nothing but a larger sample count, the records stay
valid, only samples ``n..m-1`` run, and the header is rewritten to the new config (its hash, its plan), so the
report's completeness and counts read the new size. This is how a user narrows an interval the report's power
estimate calls too wide without rerunning what is done. Fewer samples than the run holds is refused: the records
of the dropped samples would sit outside the plan.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from evalkit.config.schema import EvalConfig, config_hash_without_samples
from evalkit.errors import RunDirError

log = logging.getLogger(__name__)

# the header key of ``config_hash_without_samples`` (headers written before it are hashed from their config)
SAMPLES_FREE_HASH_KEY = "config_hash_without_samples"
# what a grown header takes from the new one; the rest (start time, machine, model facts) stays the run's
_GROWN_KEYS = ("config", "config_hash", SAMPLES_FREE_HASH_KEY, "config_path", "planned")


def _samples_free_hash(header: dict[str, Any]) -> str | None:
    """The header's hash without samples: recorded, or computed from its config (None if that does not load)."""
    if isinstance(header.get(SAMPLES_FREE_HASH_KEY), str):
        return header[SAMPLES_FREE_HASH_KEY]
    try:
        return config_hash_without_samples(EvalConfig.model_validate(header.get("config")))
    except ValueError:  # pydantic's ValidationError is one: a hand-edited or foreign header cannot grow
        return None


def _samples(header: dict[str, Any]) -> int | None:
    config = header.get("config")
    samples = config.get("samples") if isinstance(config, dict) else None
    return samples if isinstance(samples, int) else None


def grown_header(run_dir: Path, existing: dict[str, Any], header: dict[str, Any]) -> dict[str, Any] | None:
    """``existing`` rewritten for ``header``'s larger sample count, or None when this is not such a rerun.

    None also when nothing differs (a plain resume) or other fields differ (the caller refuses the config).
    Raises ``RunDirError`` when the configs differ only in a *smaller* sample count.
    """
    before, now = _samples(existing), _samples(header)
    if existing.get("config_hash") == header.get("config_hash") or before is None or now is None:
        return None
    if existing.get("models") != header.get("models") or _samples_free_hash(existing) != _samples_free_hash(header):
        return None
    if now < before:
        raise RunDirError(
            f"{run_dir}: holds a run of samples: {before}; samples: {now} would leave recorded samples out of its "
            f"plan; set samples to {before} or more to resume or grow it, or start a new run with --output-dir NEW_DIR"
        )
    log.warning("%s: grows from %d to %d samples (the config is the run's but for samples); the recorded samples "
                "are kept and samples %d-%d run", run_dir, before, now, before, now - 1)
    return {**existing, **{key: header[key] for key in _GROWN_KEYS if key in header}}
