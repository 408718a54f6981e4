"""Real documents for a documents task: Liu et al.'s QA and key-value files, or a user corpus, and distractors.

``DocumentCorpus`` loads a ``documents:`` block's source once (a missing or malformed file is a one-line
``TaskError`` naming the file and line) and gives, per example, the gold document, the ranked distractors
and the answer aliases. Which distractor policy made a prompt is in ``DocumentCorpus.policy`` (every record
carries it). Retrieved distractors come from a BM25 ranking (the ``bm25s`` library) of the pool against the
question; a passage containing any normalised alias of the answer is never a distractor.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.config.yaml_io import path_problem
from evalkit.errors import TaskError
from evalkit.tasks.document_spec import DocumentsSpec, JsonlSource, LiuKvSource, LiuQaSource
from evalkit.scoring import contains_answer, subspan_normalize


@dataclass(frozen=True)
class Document:
    """One document as the prompt shows it: ``title`` (may be empty) and ``text``."""

    title: str
    text: str


@dataclass(frozen=True)
class DocumentExample:
    """One question with its gold document and the distractors ranked for it (most similar first)."""

    example_id: str  # "<file stem>:<line>", so a record says which row it came from
    question: str
    answers: tuple[str, ...]  # every accepted alias; the first is the gold answer shown in reports
    gold: Document
    distractors: tuple[Document, ...]
    self_answering: bool = False  # the question contains its own answer (kept only with keep_self_answering)


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line, object) of a ``.jsonl`` or ``.jsonl.gz`` file; TaskError naming the file and line."""
    problem = path_problem(path)
    if problem == "file not found":
        raise TaskError(f"{path}: file not found; fix documents.source in the task file, or set the config's "
                        "data_dir (--set data_dir=FOLDER) to the folder that holds it")
    if problem is not None:  # a FIFO would block the read, a folder fail it: name what the path is instead
        raise TaskError(f"{path}: {problem}; documents.source must name a .jsonl or .jsonl.gz file")
    opener = gzip.open if path.suffix == ".gz" else open
    number = 0
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise TaskError(f"{path}:{number}: not JSON ({err.msg}); one JSON object per line") from None
                if not isinstance(row, dict):
                    raise TaskError(f"{path}:{number}: a JSON {type(row).__name__}, not an object")
                yield number, row
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as err:
        # a corrupt .gz fails while decompressing, so the line is the one being read (after ``number``)
        raise TaskError(f"{path}:{number + 1}: unreadable ({err}); give a UTF-8 .jsonl or gzipped .jsonl.gz "
                        "file (re-download a corrupt one)") from None


def _field(row: dict[str, Any], name: str, kind: type, where: str) -> Any:
    value = row.get(name)
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        raise TaskError(f"{where}: field {name!r} is missing or not a {'non-empty string' if kind is str else kind.__name__}")
    return value


def _aliases(row: dict[str, Any], where: str) -> tuple[str, ...]:
    answers = row.get("answers")
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise TaskError(f"{where}: field 'answers' must be a non-empty list of strings (the answer's aliases)")
    return tuple(answers)


@dataclass(frozen=True)
class _Row:
    example_id: str
    question: str
    answers: tuple[str, ...]
    gold: Document
    own_distractors: tuple[Document, ...]  # the row's own non-gold ctxs (liu_qa) or pairs (liu_kv)


def _liu_qa_rows(path: Path) -> list[_Row]:
    rows = []
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        docs = [_passage(ctx, f"{where}: ctxs[{i}]") for i, ctx in enumerate(_field(row, "ctxs", list, where))]
        gold = [doc for doc, is_gold in docs if is_gold]
        if len(gold) != 1:
            raise TaskError(f"{where}: {len(gold)} ctxs have isgold: true; a row needs exactly one gold passage")
        rows.append(_Row(f"{path.name}:{number}", _field(row, "question", str, where), _aliases(row, where), gold[0],
                         tuple(doc for doc, is_gold in docs if not is_gold)))
    return rows


def _liu_kv_rows(path: Path) -> list[_Row]:
    rows = []
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        records = _field(row, "ordered_kv_records", list, where)
        key, value = _field(row, "key", str, where), _field(row, "value", str, where)
        pairs = [_kv_pair(record, f"{where}: ordered_kv_records[{i}]") for i, record in enumerate(records)]
        if Document(key, value) not in pairs:
            raise TaskError(f"{where}: the pair of 'key' and 'value' is not in ordered_kv_records")
        rows.append(_Row(f"{path.name}:{number}", key, (value,), Document(key, value),
                         tuple(p for p in pairs if p != Document(key, value))))
    return rows


def _passage(ctx: Any, where: str) -> tuple[Document, bool]:
    """One of a liu_qa row's ``ctxs`` as (document, is gold)."""
    if not isinstance(ctx, dict):
        raise TaskError(f"{where}: {_shown(ctx)} is not a passage object ({{\"title\", \"text\", \"isgold\"}})")
    return Document(str(ctx.get("title") or ""), _field(ctx, "text", str, where)), ctx.get("isgold") is True


def _kv_pair(record: Any, where: str) -> Document:
    """One of a liu_kv row's ``ordered_kv_records`` as a document (title: the key, text: the value)."""
    if not (isinstance(record, list) and len(record) == 2 and all(isinstance(item, str) for item in record)):
        raise TaskError(f"{where}: {_shown(record)} is not a [key, value] pair of two strings")
    return Document(record[0], record[1])


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _jsonl_rows(documents_path: Path, questions_path: Path) -> tuple[list[_Row], list[Document]]:
    corpus, ids = [], {}
    for number, row in read_jsonl(documents_path):
        where = f"{documents_path}:{number}"
        ids[str(row.get("id", len(corpus)))] = len(corpus)
        corpus.append(Document(str(row.get("title") or ""), _field(row, "text", str, where)))
    rows = []
    for number, row in read_jsonl(questions_path):
        where = f"{questions_path}:{number}"
        gold = row.get("gold")
        index = gold if isinstance(gold, int) and not isinstance(gold, bool) else ids.get(str(gold))
        if index is None or not 0 <= index < len(corpus):
            raise TaskError(f"{where}: 'gold' {gold!r} names no document of {documents_path.name} "
                            f"(give its 0-based line index or its id)")
        rows.append(_Row(f"{questions_path.name}:{number}", _field(row, "question", str, where),
                         _aliases(row, where), corpus[index], ()))
    return rows, corpus


class DistractorRetriever:
    """BM25 over a pool of documents; the top documents for a question that hold no answer alias."""

    def __init__(self, pool: list[Document]):
        import bm25s  # a sparse-matrix BM25 (scipy); imported here so evalkit's CLI starts fast

        self._bm25s = bm25s
        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
        unique = list(dict.fromkeys(pool))  # a passage gold for two questions is one candidate
        self._pool = unique
        self._normalised = [subspan_normalize(f"{doc.title} {doc.text}") for doc in unique]
        self._retriever = bm25s.BM25()
        tokens = bm25s.tokenize([f"{doc.title} {doc.text}" for doc in unique], stopwords="en", show_progress=False)
        self._retriever.index(tokens, show_progress=False)

    def distractors(self, question: str, answers: tuple[str, ...], gold: Document, count: int) -> tuple[Document, ...]:
        """``count`` pool documents most similar to ``question``, none the gold or holding an alias."""
        aliases = [a for a in map(subspan_normalize, answers) if a]
        query = self._bm25s.tokenize([question], stopwords="en", return_ids=False, show_progress=False)
        if not query[0]:  # a question of stop words only: fall back to the pool's order
            ranked = list(range(len(self._pool)))
        else:
            ranked, _ = self._retriever.retrieve(query, k=len(self._pool), show_progress=False)
            ranked = [int(i) for i in ranked[0]]
        chosen = []
        for index in ranked:
            doc = self._pool[index]
            if doc == gold or any(alias in self._normalised[index] for alias in aliases):
                continue
            chosen.append(doc)
            if len(chosen) == count:
                return tuple(chosen)
        raise TaskError(f"only {len(chosen)} distractors without an answer alias exist for {question!r}; "
                        f"lower documents.total to at most {len(chosen) + 1}", task_field="documents.total")


class DocumentCorpus:
    """The examples of one ``documents:`` block, loaded once; distractors ranked per example on first use."""

    def __init__(self, spec: DocumentsSpec, base_dir: Path, metric: str = "contains"):
        self.spec = spec
        source = spec.source
        pool: list[Document] = []
        if isinstance(source, LiuQaSource):
            self._rows = _liu_qa_rows(base_dir / source.path)
            pool = [row.gold for row in self._rows] + [d for row in self._rows for d in row.own_distractors]
            retrieved = source.distractors == "retrieved"
        elif isinstance(source, LiuKvSource):
            self._rows, retrieved = _liu_kv_rows(base_dir / source.path), False
        else:
            assert isinstance(source, JsonlSource)
            self._rows, pool = _jsonl_rows(base_dir / source.documents, base_dir / source.questions)
            retrieved = True
        if not self._rows:
            raise TaskError(f"{base_dir}: documents.source holds no rows; give a file with at least one")
        self._retriever = DistractorRetriever(pool) if retrieved and spec.total > 1 else None
        self.policy = self._policy_text(source, retrieved, len(pool))
        # questions an echo of which scores right by the task's metric; the pool keeps their passages as distractors
        self.self_answering = frozenset(i for i, row in enumerate(self._rows)
                                        if contains_answer(row.question, row.answers, metric))
        self.self_answering_left_out = 0 if spec.keep_self_answering else len(self.self_answering)
        self._sampled = [i for i in range(len(self._rows)) if spec.keep_self_answering or i not in self.self_answering]
        if not self._sampled:
            raise TaskError(f"{base_dir}: every question of documents.source contains its own answer; set "
                            "documents.keep_self_answering: true to ask them anyway", task_field="documents")
        self._examples: dict[int, DocumentExample] = {}
        self._orders: dict[int, list[int]] = {}

    @staticmethod
    def _policy_text(source: object, retrieved: bool, pool_size: int) -> str:
        if retrieved:
            return f"retrieved: BM25 over {pool_size} pooled passages, passages containing an answer alias excluded"
        if isinstance(source, LiuKvSource):
            return "file: the row's other key-value pairs, in the file's order"
        return "file: the row's own non-gold ctxs, in the file's order"

    def __len__(self) -> int:
        return len(self._rows)

    def example_index(self, sample: int, seed: int) -> int:
        """The row of ``sample``: a seeded shuffle of the sampled rows, so samples are distinct questions."""
        if sample >= len(self._sampled):
            left_out = (f" ({self.self_answering_left_out} questions containing their own answer are left out)"
                        if self.self_answering_left_out else "")
            raise TaskError(f"sample {sample} asks for more questions than the {len(self._sampled)} rows of the "
                            f"file{left_out}; use samples <= {len(self._sampled)}")
        if seed not in self._orders:  # one shuffle per seed, not one per trial
            order = list(self._sampled)  # every row when none is left out: the same shuffle as before
            random.Random(f"evalkit.documents:{seed}").shuffle(order)
            self._orders[seed] = order
        return self._orders[seed][sample]

    def example(self, index: int) -> DocumentExample:
        """Example ``index`` (a file row) with ``total - 1`` distractors; TaskError if the row has too few."""
        if index not in self._examples:
            row, need = self._rows[index], self.spec.total - 1
            if self._retriever is not None:
                distractors = self._retriever.distractors(row.question, row.answers, row.gold, need)
            else:
                if len(row.own_distractors) < need:
                    raise TaskError(f"{row.example_id}: the row has {len(row.own_distractors)} distractors but "
                                    f"documents.total {self.spec.total} needs {need}; lower documents.total",
                                    task_field="documents.total")
                distractors = row.own_distractors[:need]
            self._examples[index] = DocumentExample(row.example_id, row.question, row.answers, row.gold, distractors,
                                                    index in self.self_answering)
        return self._examples[index]
