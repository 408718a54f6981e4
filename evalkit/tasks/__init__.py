"""Tasks: specs from ``tasks/*.yaml``, needle values, haystack sources and the task registry."""

from __future__ import annotations

from evalkit.tasks.haystacks import (
    HAYSTACK_SOURCES,
    FileHaystack,
    GeneratedHaystack,
    HaystackSource,
    haystack_for_task,
    haystack_from_spec,
    split_sentences,
)
from evalkit.tasks.needles import WORDS, draw_value, instantiate_needle, prompt_parts
from evalkit.tasks.registry import (
    BUILTIN_TASKS_DIR,
    default_search_dirs,
    find_task,
    is_task_path,
    list_tasks,
    load_task,
    load_task_file,
    search_path,
)
from evalkit.tasks.spec import (
    TASK_NAME_PATTERN,
    ChoiceValue,
    FilesHaystackSpec,
    GeneratedHaystackSpec,
    IntegerValue,
    TaskSpec,
    UuidValue,
    WordValue,
)

__all__ = [
    "BUILTIN_TASKS_DIR",
    "HAYSTACK_SOURCES",
    "TASK_NAME_PATTERN",
    "ChoiceValue",
    "FileHaystack",
    "FilesHaystackSpec",
    "GeneratedHaystack",
    "GeneratedHaystackSpec",
    "HaystackSource",
    "IntegerValue",
    "TaskSpec",
    "UuidValue",
    "WORDS",
    "WordValue",
    "default_search_dirs",
    "draw_value",
    "find_task",
    "haystack_for_task",
    "haystack_from_spec",
    "instantiate_needle",
    "is_task_path",
    "list_tasks",
    "load_task",
    "load_task_file",
    "prompt_parts",
    "search_path",
    "split_sentences",
]
