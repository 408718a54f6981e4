"""Checks of the config's content axes (``layout.needle_variant``, ``layout.haystack_order``) against its tasks.

Run once the tasks are loaded (``prepare_tasks``), before any prompt is built, so ``evalkit validate``, ``plan``
and ``run`` refuse a variant name a task does not define, or a shuffled haystack a task does not have, in one
line naming the config field and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.errors import ConfigError
from evalkit.tasks.variants import variant_names


def check_content_axes(layout: Any, config_path: str | Path, specs: Mapping[str, Any]) -> None:
    """ConfigError unless every task of ``specs`` (name -> TaskSpec, in the config's order) supports the
    values of the ``layout`` grid's ``needle_variant`` and ``haystack_order`` axes."""
    wanted = [name for name in layout.needle_variant if name is not None]
    for index, (task_name, spec) in enumerate(specs.items()):
        known = variant_names(spec)
        for name in wanted:
            if name in known:
                continue
            if not known:
                raise ConfigError(f"{config_path}: layout.needle_variant: {name!r}, but task {task_name} "
                                  f"(tasks[{index}]) has no needle_variants; add them to its task file or remove "
                                  f"{name!r}")
            raise ConfigError(f"{config_path}: layout.needle_variant: {name!r} is not a needle variant of task "
                              f"{task_name} (tasks[{index}]); use one of {', '.join(known)} (or null for its needle)")
        if "shuffled" in layout.haystack_order and spec.documents is not None:
            raise ConfigError(f"{config_path}: layout.haystack_order: shuffled reorders haystack sentences, and task "
                              f"{task_name} (tasks[{index}]) is a documents task; remove shuffled or this task")
