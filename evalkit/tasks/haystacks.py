"""Haystack sources: deterministic, endless streams of filler sentences.

Every sentence ends with terminal punctuation (``.``, ``!`` or ``?``, possibly followed by a closing
quote or bracket) or at a paragraph break, and holds no newline, so the prompt builder can place at sentence
boundaries. Text from the user's files or datasets is checked for the needle's kind of value: sentences that
hold one (any number for an integer pass key) are left out, and the count is stated (``dropped_sentences``).
"""

from __future__ import annotations

import glob
import itertools
import logging
import random
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from evalkit.config.yaml_io import path_problem
from evalkit.tasks.documents import DocumentCorpus
from evalkit.errors import HaystackError
from evalkit.tasks.prose import generate_sentences
from evalkit.tasks.sources import DocumentsHaystack, KvPairsHaystack, NoiseHaystack
from evalkit.tasks.spec import FilesHaystackSpec, GeneratedHaystackSpec, TaskSpec
from evalkit.tasks.values import drop_matching, value_kind_pattern

# a sentence: the shortest run of text up to . ! ? (and closing quotes/brackets) that whitespace or the end follows
_SENTENCE_RE = re.compile(r"\S.*?[.!?]+[\"'\u201d\u2019)\]]*(?=\s|$)")
_GLOB_CHARS = re.compile(r"[*?\[]")
# a paragraph break: a blank line (whitespace-only lines count as blank)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
# a full stop glued to the next sentence ("accelerating.We"): lower-case letter, terminal mark, capitalised word
_GLUED = re.compile(r"(?<=[a-z][.!?])(?=[A-Z][a-z])")

logger = logging.getLogger(__name__)


@runtime_checkable
class HaystackSource(Protocol):
    """Anything that yields filler sentences for a seed; the same seed gives the same stream."""

    def sentences(self, seed: int) -> Iterator[str]:
        """Endless stream of sentences (terminal punctuation, no newline), deterministic in ``seed``."""
        ...


class GeneratedHaystack:
    """evalkit's own essay-like prose (see ``prose.py``): varied, no digits, no task vocabulary."""

    def sentences(self, seed: int) -> Iterator[str]:
        """Endless generated sentences for ``seed``."""
        return generate_sentences(seed)


class FileHaystack:
    """Sentences of the user's text files, cycled from a seed-dependent starting sentence.

    ``paths`` are files, folders or glob patterns (relative to ``base_dir``, else the cwd, unless absolute),
    read as UTF-8 in sorted order per entry; an entry starting with ``!`` leaves out the files it matches.
    A file named by itself must be usable; a file matched by a glob or folder that is unusable (not UTF-8,
    fewer than two sentences) is skipped and counted in ``skipped``. Whitespace and newlines collapse to
    single spaces before splitting.
    """

    def __init__(self, paths: str | Path | Sequence[str | Path], base_dir: Path | None = None):
        items = [paths] if isinstance(paths, (str, Path)) else list(paths)
        base = base_dir if base_dir is not None else Path()
        includes = [base / Path(item).expanduser() for item in items if not str(item).startswith("!")]
        excludes = [base / Path(str(item)[1:]).expanduser() for item in items if str(item).startswith("!")]
        if not includes:
            raise HaystackError("files haystack: no path given; name at least one text file or glob")
        left_out = {f.resolve() for item in excludes for f in _matches(item)}
        files: list[Path] = []
        sentences: list[str] = []
        skipped: list[tuple[Path, str]] = []
        for item in includes:
            single = not _GLOB_CHARS.search(str(item)) and not Path(item).is_dir()
            for path in expand_paths(item):
                if path.resolve() in left_out or path in files:
                    continue
                try:
                    found = read_sentences(path)
                except HaystackError as err:
                    if single:
                        raise
                    skipped.append((path, str(err).removeprefix(f"{path}: ").split(";")[0]))
                    continue
                files.append(path)
                sentences.extend(found)
        if not files:
            named = ", ".join(f"{p} ({why})" for p, why in skipped[:5]) or "every match is left out by a ! entry"
            raise HaystackError(f"files haystack: no usable text file: {named}; give files with at least two sentences")
        if skipped:
            logger.warning("files haystack: skipped %d unusable file(s) of %d: %s", len(skipped),
                           len(skipped) + len(files), ", ".join(f"{p} ({why})" for p, why in skipped[:5]))
        self.files: tuple[Path, ...] = tuple(files)
        self.skipped: tuple[tuple[Path, str], ...] = tuple(skipped)  # (file, why) of glob matches left out
        self._sentences: tuple[str, ...] = tuple(sentences)
        self.dropped_sentences = 0

    @property
    def units(self) -> tuple[str, ...]:
        """The sentences the stream cycles through (after ``drop_matching``)."""
        return self._sentences

    def drop_matching(self, pattern: re.Pattern[str], what: str) -> int:
        """Leave out the sentences ``pattern`` finds something in; HaystackError if fewer than two remain."""
        where = ", ".join(str(f) for f in self.files)
        self._sentences, self.dropped_sentences = drop_matching(self._sentences, pattern, what, where)
        return self.dropped_sentences

    def sentences(self, seed: int) -> Iterator[str]:
        """Endless cycle through the files' sentences, starting at an offset drawn from ``seed``."""
        start = random.Random(f"evalkit.files:{seed}").randrange(len(self._sentences))
        ordered = self._sentences[start:] + self._sentences[:start]
        return itertools.cycle(ordered)


def _matches(item: Path) -> list[Path]:
    """Files an exclusion entry names (none is fine: nothing to leave out)."""
    try:
        return expand_paths(item)
    except HaystackError:
        return []


def expand_paths(item: str | Path) -> list[Path]:
    """The files a path or glob names (sorted); HaystackError when none exists."""
    text = str(Path(item).expanduser())
    if _GLOB_CHARS.search(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise HaystackError(f"{text}: no file matches this pattern; check the path or glob")
        return files
    path = Path(text)
    if path.is_dir():  # a folder: every .txt and .md file in it and below, in sorted order
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".txt", ".md"))
        if not files:
            raise HaystackError(f"{text}: folder holds no .txt or .md file; put text files in it or give a glob")
        return files
    problem = path_problem(path)
    if problem is not None:
        raise HaystackError(f"{text}: {problem}; give the path of a text file (or a glob such as texts/*.txt)")
    return [path]


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences on . ! ? followed by whitespace, and at paragraph breaks (blank lines).

    Whitespace inside a paragraph collapses to single spaces; a terminal mark glued to the next sentence
    ("accelerating.We") still ends a sentence. A paragraph that ends without terminal punctuation (a heading,
    a cut passage) is a sentence as it is: nothing is added to the text.
    """
    found: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        flat = _GLUED.sub(" ", " ".join(paragraph.split()))
        end = 0
        for match in _SENTENCE_RE.finditer(flat):  # matches are separated by whitespace only
            found.append(match.group(0))
            end = match.end()
        tail = flat[end:].strip()
        if tail:
            found.append(tail)
    return found


def read_sentences(path: Path) -> list[str]:
    """Sentences of one UTF-8 text file; HaystackError naming the file when it has fewer than two."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise HaystackError(f"{path}: not UTF-8 text; save the file as UTF-8") from None
    except OSError as exc:
        raise HaystackError(f"{path}: cannot read the file ({exc.strerror}); check its permissions") from None
    sentences = split_sentences(text)
    if not sentences:
        raise HaystackError(f"{path}: file is empty; put at least two sentences of prose in it")
    if len(sentences) < 2:
        raise HaystackError(f"{path}: only one sentence found; put at least two sentences (ending in . ! or ?)")
    return sentences


# ---------------------------------------------------------------- registry

# builder(the task's `haystack:` spec, the task file's folder) -> source
class DatasetHaystack:
    """Sentences of one text column of a dataset saved with ``datasets``' ``save_to_disk`` (read offline)."""

    def __init__(self, path: Path, column: str, split: str | None):
        try:
            import datasets
        except ImportError:
            raise HaystackError("the dataset haystack needs the `datasets` package; "
                                "pip install 'evalkit[datasets]'") from None
        if not path.is_dir():
            raise HaystackError(f"{path}: no such folder; give a folder written by Dataset.save_to_disk")
        try:
            data = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as exc:
            raise HaystackError(f"{path}: not a saved dataset ({exc}); write it with Dataset.save_to_disk") from None
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise HaystackError(f"{path}: split {split!r} not found; set haystack.split to one of "
                                    f"{', '.join(data)}")
            data = data[split]
        if column not in data.column_names:
            raise HaystackError(f"{path}: no column {column!r}; set haystack.column to one of "
                                f"{', '.join(data.column_names)}")
        self._sentences = tuple(s for text in data[column] if isinstance(text, str) for s in split_sentences(text))
        if len(self._sentences) < 2:
            raise HaystackError(f"{path}: column {column!r} holds fewer than two sentences; use a text column")
        self._path = path
        self.dropped_sentences = 0

    @property
    def units(self) -> tuple[str, ...]:
        """The sentences the stream cycles through (after ``drop_matching``)."""
        return self._sentences

    def drop_matching(self, pattern, what: str) -> int:
        """Leave out the sentences ``pattern`` finds something in; HaystackError if fewer than two remain."""
        self._sentences, self.dropped_sentences = drop_matching(self._sentences, pattern, what, self._path)
        return self.dropped_sentences

    def sentences(self, seed: int) -> Iterator[str]:
        """The dataset's sentences cycled from an offset drawn from ``seed``."""
        start = random.Random(f"evalkit.dataset:{seed}").randrange(len(self._sentences))
        return itertools.cycle(self._sentences[start:] + self._sentences[:start])

    def available_tokens(self, count_tokens: Callable[[str], int]) -> int:
        """Tokens of all sentences as placed (``count_tokens`` counts one piece)."""
        return sum(count_tokens(s) for s in self._sentences)


HaystackBuilder = Callable[[Any, Path], HaystackSource]


def _build_generated(spec: GeneratedHaystackSpec, task_dir: Path) -> HaystackSource:
    return GeneratedHaystack()


def _build_files(spec: FilesHaystackSpec, task_dir: Path) -> HaystackSource:
    # a relative path is relative to the task file; an absolute one replaces task_dir in the join
    return FileHaystack([spec.path] if isinstance(spec.path, str) else spec.path, base_dir=task_dir)


def _build_noise(spec: Any, task_dir: Path) -> HaystackSource:
    return NoiseHaystack()


def _build_kv_pairs(spec: Any, task_dir: Path) -> HaystackSource:
    return KvPairsHaystack()


def _build_documents(spec: Any, task_dir: Path) -> HaystackSource:
    return DocumentsHaystack(spec.similarity)


def _build_dataset(spec: Any, task_dir: Path) -> HaystackSource:
    return DatasetHaystack(task_dir / Path(spec.path).expanduser(), spec.column, spec.split)


# `source:` value of a task's haystack -> builder(spec, task file folder)
HAYSTACK_SOURCES: dict[str, HaystackBuilder] = {
    "generated": _build_generated,
    "files": _build_files,
    "noise": _build_noise,
    "kv_pairs": _build_kv_pairs,
    "documents": _build_documents,
    "dataset": _build_dataset,
}


def haystack_from_spec(spec: GeneratedHaystackSpec | FilesHaystackSpec, task_file_dir: str | Path) -> HaystackSource:
    """Build the haystack source a task's ``haystack:`` block describes (paths relative to ``task_file_dir``)."""
    source = getattr(spec, "source", None)
    builder = HAYSTACK_SOURCES.get(source) if isinstance(source, str) else None
    if builder is None:
        known = ", ".join(sorted(HAYSTACK_SOURCES))
        raise HaystackError(f"haystack.source: {source!r} is not a known source; use one of {known}")
    return builder(spec, Path(task_file_dir))


def haystack_for_task(task: TaskSpec, data_dir: Path | None = None) -> HaystackSource:
    """The haystack source of a loaded task (a ``files`` path is relative to the task's file); built once.

    A documents task gets its ``DocumentCorpus``, paths relative to ``data_dir`` when given (a config's).

    A finite source (files, dataset) leaves out the sentences holding values of the needle's kind
    (``value_kind_pattern``); ``dropped_sentences`` says how many.
    """
    if task.loaded_haystack is not None:
        return task.loaded_haystack  # type: ignore[return-value]
    if task.documents is not None:  # a documents task: its corpus stands where the haystack would
        return DocumentCorpus(task.documents, data_dir or task.source_dir, task.metric)  # type: ignore[return-value]
    source = haystack_from_spec(task.haystack, task.source_dir)
    kind = value_kind_pattern(task)
    if kind is not None and hasattr(source, "drop_matching"):
        source.drop_matching(*kind)
    return source
