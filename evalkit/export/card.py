"""The dataset card (README.md) of an exported run: what was run, with what, and which methods to cite.

The citations follow the run: the needle test always; Liu et al. for a depth sweep or their documents and metric;
RULER for its task kinds or placed look-alikes; the arms' papers for the arms the run compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from evalkit.export.table import TrialTable

DATA_GLOB = "data/train-*.parquet"  # the card's data_files: where the Hub and load_dataset find the rows


@dataclass(frozen=True)
class Citation:
    """One method a run used: what it is in one line and its BibTeX entry."""

    method: str
    bibtex: str


NEEDLE = Citation(
    "needle in a haystack: a fact placed at a controlled depth of a long prompt",
    """@misc{kamradt2023needle,
  author = {Kamradt, Greg}, title = {Needle In A Haystack - Pressure Testing LLMs}, year = {2023},
  howpublished = {\\url{https://github.com/gkamradt/LLMTest_NeedleInAHaystack}}}""")
LIU = Citation(
    "accuracy by the position of the relevant information (lost in the middle)",
    """@article{liu2024lost,
  author = {Liu, Nelson F. and Lin, Kevin and Hewitt, John and Paranjape, Ashwin and Bevilacqua, Michele and
            Petroni, Fabio and Liang, Percy}, title = {Lost in the Middle: How Language Models Use Long Contexts},
  journal = {Transactions of the Association for Computational Linguistics}, volume = {12}, pages = {157--173},
  year = {2024}, note = {arXiv:2307.03172 (2023)}}""")
RULER = Citation(
    "RULER's synthetic retrieval tasks (multi-key, multi-value, multi-query, look-alikes)",
    """@inproceedings{hsieh2024ruler,
  author = {Hsieh, Cheng-Ping and Sun, Simeng and Kriman, Samuel and Acharya, Shantanu and Rekesh, Dima and
            Jia, Fei and Zhang, Yang and Ginsburg, Boris},
  title = {{RULER}: What's the Real Context Size of Your Long-Context Language Models?},
  booktitle = {First Conference on Language Modeling}, year = {2024}, note = {arXiv:2404.06654}}""")
FOUND_IN_THE_MIDDLE = Citation(
    "attention calibrated for positional bias (dummy needle, calibrate_attention)",
    """@inproceedings{hsieh2024found,
  author = {Hsieh, Cheng-Yu and Chuang, Yung-Sung and Li, Chun-Liang and Wang, Zifeng and Le, Long T. and
            Kumar, Abhishek and Glass, James and Ratner, Alexander and Lee, Chen-Yu and Krishna, Ranjay and
            Pfister, Tomas},
  title = {Found in the Middle: Calibrating Positional Attention Bias Improves Long Context Utilization},
  booktitle = {Findings of the Association for Computational Linguistics: ACL 2024}, year = {2024},
  note = {arXiv:2406.16008}}""")
ATTENTION_SORT = Citation(
    "attention sorting (attention_sort)",
    """@misc{peysakhovich2023attention,
  author = {Peysakhovich, Alexander and Lerer, Adam},
  title = {Attention Sorting Combats Recency Bias In Long Context Language Models}, year = {2023},
  eprint = {2310.01427}, archivePrefix = {arXiv}}""")
RETRIEVAL_HEADS = Citation(
    "retrieval heads (attention capture, copy events, mask_heads)",
    """@misc{wu2024retrieval,
  author = {Wu, Wenhao and Wang, Yizhong and Xiao, Guangxuan and Peng, Hao and Fu, Yao},
  title = {Retrieval Head Mechanistically Explains Long-Context Factuality}, year = {2024},
  eprint = {2404.15574}, archivePrefix = {arXiv}}""")

RULER_TASKS = frozenset({"multikey", "multivalue", "multiquery", "passkey_uuid", "distractors"})


def citations(table: TrialTable) -> list[Citation]:
    """The methods ``table``'s run used, in the order a paper would cite them."""
    config = table.header.get("config") if isinstance(table.header.get("config"), dict) else {}
    arms = {m.get("arm") for m in config.get("mitigations") or [] if isinstance(m, dict)}
    tasks = set(table.column("task").values)
    depths = set(table.column("depth").values)
    documents = any(v is not None for v in table.column("documents_total").values)
    metrics = set(table.column("metric").values)
    found = [NEEDLE]
    if len(depths) > 1 or documents or metrics & {"liu", "subspan_em"}:
        found.append(LIU)
    if tasks & RULER_TASKS or any(table.column("distractors_placed").values):
        found.append(RULER)
    if "dummy_needle" in set(table.column("control").values) or "calibrate_attention" in arms:
        found.append(FOUND_IN_THE_MIDDLE)
    if "attention_sort" in arms:
        found.append(ATTENTION_SORT)
    attention = config.get("attention") if isinstance(config.get("attention"), dict) else {}
    if attention.get("capture") or "mask_heads" in arms:
        found.append(RETRIEVAL_HEADS)
    return found


def dataset_card(table: TrialTable, title: str) -> str:
    """README.md of the dataset folder: YAML metadata the Hub reads, then the run, its columns and citations."""
    header = table.header
    metadata = {"pretty_name": title, "tags": ["evalkit", "long-context", "needle-in-a-haystack"],
                "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": DATA_GLOB}]}]}
    models = header.get("models") if isinstance(header.get("models"), dict) else {}
    versions = header.get("versions") if isinstance(header.get("versions"), dict) else {}
    skipped = f": {table.skipped} of them" if table.skipped else ""
    lines = ["---", yaml.safe_dump(metadata, sort_keys=False).rstrip(), "---", "", f"# {title}", "",
             "Trial-level results of an evalkit run (a fact placed at controlled token positions of long prompts): "
             f"{table.trials} finished trials, one row each (trials the run skipped are left out{skipped}). "
             "`correct` is the task's metric (`metric`); `failure` says why an answer is what it is.", "",
             "## Run", "", *_items(_run_facts(header)), "", "## Models", "", "| model | revision |", "| --- | --- |",
             *(f"| {name} | {revision} |" for name, revision in models.items()), "",
             "## Library versions", "", *_items(versions), "", "## Config", "", "```yaml",
             yaml.safe_dump(header.get("config", {}), sort_keys=False).rstrip(), "```", "",
             "## Columns", "", "| column | type | nulls | meaning |", "| --- | --- | --- | --- |",
             *(f"| `{c.name}` | {c.kind} | {'yes' if c.nullable else 'no'} | {_cell(c.description)} |"
               for c in table.columns),
             "", "## How to cite", "", "The methods this run used:", ""]
    for citation in citations(table):
        lines += [f"- {citation.method}", "", "```bibtex", citation.bibtex, "```", ""]
    return "\n".join(lines)


def _run_facts(header: dict[str, Any]) -> dict[str, Any]:
    names = ("evalkit_version", "config_hash", "config_path", "seed", "started_at")
    return {name: header[name] for name in names if name in header}


def _cell(text: str) -> str:
    """``text`` as one Markdown table cell (a ``|`` inside would start another)."""
    return text.replace("|", "\\|")


def _items(values: dict[str, Any]) -> list[str]:
    return [f"- {name}: `{value}`" for name, value in values.items()]
