"""Hostile and careless inputs, as a table: each ends in one line on stderr, exit 2, and no file written.

The rows are the reproductions of issue 18 (D2, D4, D7, D8, D10-D14, D17, D19, D21) and the classes
around them. Every row goes through the real CLI entry (``evalkit.cli.main``) for ``validate`` and
``run``, with the current directory inside the test folder, so a run written to ``.`` would show too.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml

from evalkit.cli import main


@dataclass(frozen=True)
class Row:
    """One hostile input: how to change the base config (or write the file), extra CLI args, what the line names."""

    name: str
    parts: tuple[str, ...]  # text the error line must hold
    model: dict = field(default_factory=dict)  # keys merged into models[0]
    top: dict = field(default_factory=dict)  # top-level keys merged into the config
    args: tuple[str, ...] = ()
    setup: Callable[[Path, Path, pytest.MonkeyPatch], Path | None] | None = None  # may return another config path
    task: dict | None = None  # keys merged into a task file "hostile" used instead of passkey
    absent: tuple[str, ...] = ()  # text the error line must not hold (a secret)


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def _fifo(tmp: Path, config: Path, mp) -> Path:
    os.mkfifo(tmp / "fifo.yaml")
    return tmp / "fifo.yaml"


def _fifo_task(tmp: Path) -> Path:
    (tmp / "td").mkdir()
    os.mkfifo(tmp / "td" / "mine.yaml")
    return tmp / "td" / "mine.yaml"


def _loop(tmp: Path, config: Path, mp) -> Path:
    (tmp / "loop.yaml").symlink_to(tmp / "loop.yaml")
    return tmp / "loop.yaml"


def _broken_link(tmp: Path, config: Path, mp) -> Path:
    (tmp / "gone.yaml").symlink_to(tmp / "nowhere.yaml")
    return tmp / "gone.yaml"


def _deep_file(tmp: Path, config: Path, mp) -> Path:
    config.write_text(config.read_text() + f"extra: {_nested(500)}\n")
    return None


# nine anchors of nine references each: 9**9 values once expanded, from ten short lines
_BOMB = ["&a [1, 2, 3, 4, 5, 6, 7, 8, 9]"] + [f"&{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi")]


def _bomb_used(tmp: Path, config: Path, mp) -> None:
    fields = yaml.safe_load(config.read_text())
    del fields["depths"]
    config.write_text(yaml.safe_dump(fields) + "depths: [" + ", ".join(_BOMB) + "]\n")


def _bomb_unused(tmp: Path, config: Path, mp) -> None:
    config.write_text(config.read_text() + "x: [" + ", ".join(_BOMB) + "]\n")


def _bomb_task(tmp: Path, config: Path, mp) -> None:
    task = tmp / "hostile.yaml"
    task.write_text(task.read_text() + "x: [" + ", ".join(_BOMB) + "]\n")


def _cyrillic(tmp: Path, config: Path, mp) -> Path:
    config.write_text(config.read_text().replace("samples:", "\u0455amples:"))
    return None


def _no_cuda(tmp: Path, config: Path, mp) -> None:
    import torch

    mp.setattr(torch.cuda, "is_available", lambda: False)


def _one_gpu(tmp: Path, config: Path, mp) -> None:
    import torch

    mp.setattr(torch.cuda, "is_available", lambda: True)
    mp.setattr(torch.cuda, "device_count", lambda: 1)


def _offline_network(tmp: Path, config: Path, mp) -> None:
    import huggingface_hub.constants

    with socket.socket() as sock:  # a port nothing listens on: connecting is refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        mp.delenv(name, raising=False)
    mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    mp.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")


def _tiny_files(tmp: Path, config: Path, mp) -> None:
    (tmp / "texts").mkdir()
    (tmp / "texts" / "rss.txt").write_text("Only one sentence here.")
    (tmp / "texts" / "empty.txt").write_text("")


def _served(**served) -> dict:
    """A served entry (its tokenizer the tiny model's folder, the entry's name); nothing listens at port 9."""
    return {"backend": "served", "max_new_tokens": 8,
            "served": {"base_url": "http://127.0.0.1:9", "retries": 0, **served}}


def _no_key(tmp: Path, config: Path, mp) -> None:
    mp.delenv("EVALKIT_HOSTILE_KEY", raising=False)


def _not_executable(tmp: Path, config: Path, mp) -> None:
    (tmp / "llama-server").write_text("#!/bin/sh\n")  # mode 644: no x bit


def _closed_port(tmp: Path, config: Path, mp) -> None:
    with socket.socket() as sock:  # bound, then closed: nothing listens there, connecting is refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = yaml.safe_load(config.read_text())
    data["models"][0]["served"]["base_url"] = f"http://127.0.0.1:{port}"
    config.write_text(yaml.safe_dump(data, sort_keys=False))


ROWS = [
    # D2: --output-dir is a folder name, not YAML
    Row("output dir empty", ("output_dir", "empty"), args=("--output-dir", "")),
    Row("output dir blank", ("output_dir", "blank"), args=("--output-dir", "   ")),
    Row("output_dir key blank", ("output_dir", "blank"), top={"output_dir": " "}),
    # D4: booleans and ints of a model entry are strict
    Row("trust_remote_code string", ("models[0].trust_remote_code", "'yes' is not true or false"),
        model={"trust_remote_code": "yes"}),
    Row("trust_remote_code int", ("models[0].trust_remote_code", "not true or false"), model={"trust_remote_code": 1}),
    Row("chat_template string", ("models[0].chat_template", "'no' is not true or false"), model={"chat_template": "no"}),
    Row("chat_template zero", ("models[0].chat_template", "not true or false"), model={"chat_template": 0}),
    Row("max_new_tokens string", ("models[0].max_new_tokens", "'8' is not a whole number"), model={"max_new_tokens": "8"}),
    Row("max_new_tokens float", ("models[0].max_new_tokens", "8.0 is not a whole number"), model={"max_new_tokens": 8.0}),
    Row("max_new_tokens bool", ("models[0].max_new_tokens", "true is not a whole number"), model={"max_new_tokens": True}),
    Row("max_new_tokens via --set", ("models[0].max_new_tokens (from --set)",),
        args=("--set", "models.0.max_new_tokens='8'")),
    # D7: deep nesting
    Row("nested config file", ("nested more than 32 levels",), setup=_deep_file),
    Row("nested --set value", ("--set", "nested more than 32 levels"), args=("--set", f"depths={_nested(500)}")),
    Row("nested --set past recursion", ("--set", "nested"), args=("--set", f"depths={_nested(5000)}")),
    # R1: an alias bomb is refused while loading, before anything walks it
    Row("alias bomb used", ("cfg.yaml", "aliases", "more than 100,000 values"), setup=_bomb_used),
    Row("alias bomb unused", ("cfg.yaml", "aliases", "more than 100,000 values"), setup=_bomb_unused),
    Row("alias bomb task file", ("tasks[0]", "hostile.yaml", "more than 100,000 values"), task={}, setup=_bomb_task),
    Row("alias bomb --set", ("--set", "more than 100,000 values"), args=("--set", f"depths=[{', '.join(_BOMB)}]")),
    # D8: pickled weights
    Row("pickle weights", ("models[0]", "Python pickles", "allow_pickle_weights: true"), model={"name": "@pickle"}),
    # D10: devices, device maps, attention kernels
    Row("device banana", ("models[0].device", "'banana' is not a device"), model={"device": "banana"}),
    Row("device_map banana", ("models[0].device_map", "'banana' is not a device map"), model={"device_map": "banana"}),
    Row("attn bogus", ("models[0].attn_implementation", "'bogus' is not an attention implementation"),
        model={"attn_implementation": "bogus"}),
    Row("cuda without cuda", ("models[0].device", "CUDA is not available"), model={"device": "cuda"}, setup=_no_cuda),
    Row("cuda:99", ("models[0].device", "1 CUDA device(s)", "cuda:0 to cuda:0"), model={"device": "cuda:99"},
        setup=_one_gpu),
    Row("device_map cuda without cuda", ("models[0].device_map", "CUDA is not available"),
        model={"device_map": "cuda:0"}, setup=_no_cuda),
    Row("flash attention on cpu", ("models[0].attn_implementation", "CUDA only"),
        model={"attn_implementation": "flash_attention_2"}, setup=_no_cuda),
    # D11: a task folder that does not exist
    Row("task_dirs missing", ("task_dirs[0]", "'nope'", "does not exist"), top={"task_dirs": ["nope"]}),
    Row("task_dirs a file", ("task_dirs[0]", "is not a folder"), top={"task_dirs": ["cfg.yaml"]}),
    # D12: a grid too large is refused at once
    Row("samples two million", ("samples", "10,000"), top={"samples": 2_000_000}),
    Row("grid too large", ("samples", "trials, above evalkit's limit"),
        top={"samples": 9_000, "depths": [i / 1000 for i in range(1001)], "context_lengths": [128, 192]}),
    # D13: template expansions are bounded
    Row("huge width", ("tasks[0]", "answer", "width or precision of 999999999"), task={"answer": "{value:>999999999}"}),
    Row("wide precision", ("tasks[0]", "question", "width or precision"), task={"question": "What is {value:.100000}?"}),
    Row("nested format field", ("tasks[0]", "answer", "nests a field"), task={"answer": "{value:{value}}"}),
    Row("needle line with several needles", ("tasks[0]", "hostile.yaml", "raw_prompt", "places 4", "needle_line"),
        task={"generator": {"kind": "multikey", "needles": 4}, "raw_prompt": {"needle_line": True}}),
    # D14: a Hub id without network fails fast
    Row("hub id offline", ("models[0].name", "cannot be reached", "did you mean the built-in 'smollm2-135m-instruct'"),
        model={"name": "smollm2-135m-instrut"}, setup=_offline_network),
    # D17: odd files and look-alike keys
    Row("config is a fifo", ("named pipe (FIFO)",), setup=_fifo),
    Row("config is /dev/zero", ("is a device, not a regular file",), setup=lambda t, c, m: Path("/dev/zero")),
    Row("config symlink loop", ("symbolic link loop",), setup=_loop),
    Row("config broken symlink", ("broken symbolic link", "nowhere.yaml"), setup=_broken_link),
    Row("task file is a fifo", ("tasks[0]", "named pipe (FIFO)"), top={"tasks": ["fifo.yaml"]},
        setup=lambda t, c, m: _fifo(t, c, m) and None),
    Row("task name is a fifo in task_dirs", ("tasks[0]", "task 'mine'", "mine.yaml", "named pipe (FIFO)"),
        top={"tasks": ["mine"], "task_dirs": ["td"]}, setup=lambda t, c, m: _fifo_task(t) and None),
    Row("task file symlink loop", ("tasks[0]", "symbolic link loop"), top={"tasks": ["loop.yaml"]},
        setup=lambda t, c, m: _loop(t, c, m) and None),
    Row("haystack file is a fifo", ("tasks[0]", "haystack", "named pipe (FIFO)"),
        task={"haystack": {"source": "files", "path": "fifo.yaml"}}, setup=lambda t, c, m: _fifo(t, c, m) and None),
    Row("cyrillic key", ("unknown key '\u0455amples'", "U+0455", "did you mean 'samples'?"), setup=_cyrillic),
    Row("unknown model key", ("models[0]", "unknown key 'dtpye'", "did you mean 'dtype'?"), model={"dtpye": "float32"}),
    # D19: a files haystack with no usable file names them
    Row("haystack all tiny", ("no usable text file", "rss.txt (only one sentence found)", "empty.txt (file is empty)"),
        task={"haystack": {"source": "files", "path": ["texts/*.txt"]}}, setup=_tiny_files),
    Row("haystack path list empty", ("tasks[0]", "haystack"), task={"haystack": {"source": "files", "path": []}}),
    # D21: a tokenizer without a chat template
    Row("no chat template", ("models[0].chat_template", "has no chat template", "chat_template: false"),
        model={"name": "@no-template"}),
    # issue 19: served entries are checked before anything is written, without sending a prompt
    Row("served url with a password", ("models[0].served.base_url", "user name or password", "served.api_key_env"),
        model=_served(base_url="http://user:S3CRETPW@127.0.0.1:9"), absent=("S3CRETPW", "user:")),
    Row("served key variable unset", ("models[0].served.api_key_env", "EVALKIT_HOSTILE_KEY is not set"),
        model=_served(api_key_env="EVALKIT_HOSTILE_KEY"), setup=_no_key),
    Row("served program missing", ("models[0].served.serve[0]", "'/nonexistent/llama-server' is not an executable"),
        model=_served(serve=["/nonexistent/llama-server", "--port", "9"])),
    Row("served program not on PATH", ("models[0].served.serve[0]", "'evalkit-no-such-server'", "on PATH"),
        model=_served(serve=["evalkit-no-such-server"])),
    Row("served program not executable", ("models[0].served.serve[0]", "'./llama-server' is not an executable file"),
        model=_served(serve=["./llama-server"]), setup=_not_executable),
    Row("served port closed", ("models[0].served.base_url", "no llama_cpp server answers", "within 3 s",
                               "ConnectionRefusedError", "served.serve"),
        model=_served(), setup=_closed_port),
]


def _tree(root: Path) -> dict[str, float]:
    """Every path under ``root`` with its modification time (links not followed)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = path.lstat().st_mtime_ns
    return found


@pytest.fixture(scope="module")
def special_models(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    """Model folders for the rows: weights only as a pickle; a tokenizer without a chat template."""
    import torch
    from safetensors.torch import load_file

    base = tmp_path_factory.mktemp("special-models")
    pickled = base / "pickled"
    shutil.copytree(tiny_model_dir, pickled)
    weights = pickled / "model.safetensors"
    torch.save(load_file(weights), pickled / "pytorch_model.bin")  # the same weights as a pickle
    weights.unlink()
    plain = base / "no-template"
    shutil.copytree(tiny_model_dir, plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    settings = json.loads((plain / "tokenizer_config.json").read_text())
    settings.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(settings))
    return {"@pickle": pickled, "@no-template": plain}


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_hostile_input_is_one_line_exit_2_and_writes_nothing(row, command, tmp_path, tiny_model_dir, special_models,
                                                             monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    model = {"name": str(tiny_model_dir), "dtype": "float32", "device": "cpu", "max_new_tokens": 3, **row.model}
    model["name"] = str(special_models.get(model["name"], model["name"]))
    tasks = ["passkey"]
    if row.task is not None:
        task = {"name": "hostile", "needle": "The code is {value}.", "value": {"kind": "integer", "digits": 5},
                "question": "What is the code?", "answer": "{value}", **row.task}
        (work / "hostile.yaml").write_text(yaml.safe_dump(task))
        tasks = [str(work / "hostile.yaml")]
    fields = {"models": [model], "tasks": tasks, "context_lengths": [128], "depths": [0.5], "samples": 1,
              "output_dir": "run", **row.top}
    config = work / "cfg.yaml"
    config.write_text(yaml.safe_dump(fields, allow_unicode=True, sort_keys=False))
    other = row.setup(work, config, monkeypatch) if row.setup is not None else None
    config = other or config
    before = _tree(work)
    argv = [command, str(config), *row.args] + (["--quiet", "--no-report"] if command == "run" else [])
    started = time.perf_counter()
    assert main(argv) == 2
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: "), line
    for part in row.parts:
        assert part in line, (part, line)
    for part in row.absent:
        assert part not in err, (part, err)
    assert _tree(work) == before, "a refused request wrote or changed files"
    assert elapsed < 30, f"refusing took {elapsed:.0f} s"


class _Payload:
    """Unpickled by a loader that runs code, this creates ``marker``: the test checks it never does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


@pytest.mark.parametrize("writer", ["torch.save", "pickle protocol 2", "not a pickle"])
def test_a_malicious_pickle_with_allow_pickle_weights_runs_nothing_and_is_one_line(writer, tmp_path, tiny_model_dir,
                                                                                   monkeypatch, capsys):
    """Issue 19 R11: ``allow_pickle_weights: true`` and a pytorch_model.bin with a ``__reduce__`` payload."""
    import pickle

    import torch

    work, model = tmp_path / "work", tmp_path / "evil-model"
    work.mkdir()
    shutil.copytree(tiny_model_dir, model)
    (model / "model.safetensors").unlink()
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))  # a plain unpickler runs the payload: the check below can fail
    assert probe.is_dir()
    marker = tmp_path / "PAYLOAD-RAN"
    weights = {"model.embed_tokens.weight": _Payload(marker)}
    if writer == "torch.save":
        torch.save(weights, model / "pytorch_model.bin")
    elif writer == "pickle protocol 2":
        (model / "pytorch_model.bin").write_bytes(pickle.dumps(weights, protocol=2))
    else:
        (model / "pytorch_model.bin").write_bytes(bytes(range(256)) * 8)
    monkeypatch.chdir(work)
    entry = {"name": str(model), "allow_pickle_weights": True, "dtype": "float32", "device": "cpu", "max_new_tokens": 8}
    config = work / "cfg.yaml"
    config.write_text(yaml.safe_dump({"models": [entry], "tasks": ["passkey"], "context_lengths": [128],
                                      "depths": [0.5], "samples": 1, "output_dir": "run"}))
    before = _tree(work)
    assert main(["run", str(config), "--quiet", "--no-report"]) == 2
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: model {str(model)!r}: pytorch_model.bin in ") and "Traceback" not in err
    assert "was refused as unsafe or invalid" in line and "ran nothing of it" in line
    assert not marker.exists(), "the pickle's payload ran"
    assert _tree(work) == before, "a refused model wrote files"
