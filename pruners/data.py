"""Text for calibration and evaluation: offline sources first, hub datasets when reachable.

Sources: `pydoc` (the Python documentation shipped with every CPython), `pysource:MOD+...` (the source code of
standard-library modules, e.g. `pysource:json.decoder+csv`, which every CPython ships too), `text:PATH` (a text
file, a .jsonl file's "text" fields, or a folder of .txt files), `wikitext2` and `c4` (through the `datasets`
package).
When calibration and evaluation name the same offline source, its head calibrates and its tail evaluates,
so they never overlap.
"""
import random
from collections.abc import Iterator
from pathlib import Path

import torch

from pruners.errors import InputError

# The tail share of a shared offline source kept for evaluation (pydoc: about 28k of 113k tokens).
EVAL_SHARE = 0.25
SOURCES = ("pydoc", "pysource:MOD+...", "text:PATH", "wikitext2", "c4")


def pydoc_text() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def python_source(modules: str) -> str:
    """The source files of the modules named ("json.decoder+csv": '+', since source lists are comma lists),
    joined in the order named: code that every CPython ships, as it ships pydoc's prose."""
    import importlib.util

    files = []
    for name in modules.split("+"):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not (spec.origin or "").endswith(".py"):
            raise InputError(f"pysource: no Python source file for module {name!r}")
        files.append(Path(spec.origin).read_text(encoding="utf-8"))
    return "\n\n".join(files)


def file_text(path: str) -> str:
    """A text file whole; a .jsonl file's "text" fields a blank line apart (a corpus of documents, or what
    `evolve generate-data` writes: read raw, its JSON and token ids would be the text); or a folder's .txt files."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix == ".jsonl":
        lines = [line for line in p.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        return "\n\n".join(r["text"] for r in _records(path, lines, lambda r: isinstance(r.get("text"), str)))
    if p.is_file():
        return p.read_text(encoding="utf-8", errors="replace")
    if p.is_dir():
        files = sorted(p.rglob("*.txt"))
        if not files:
            raise InputError(f"no .txt files in folder {path}")
        return "\n\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files)
    raise InputError(f"no text file or folder at {path}")


def _hub(dataset: str, *args, **kwargs):
    try:
        import datasets
    except ImportError:
        raise InputError(f"{dataset} needs the datasets package: pip install 'evolve-pruning[hub]'") from None
    try:
        return datasets.load_dataset(*args, **kwargs)
    except Exception as error:  # the datasets package raises many types when offline
        raise InputError(
            f"cannot load {dataset} (no network or cache: {type(error).__name__}); use pydoc or text:PATH"
        ) from error


def hub_text(source: str, split: str) -> str:
    """The papers' texts: wikitext2 train/test; c4 from its first train and validation shards."""
    if source == "wikitext2":
        rows = _hub(source, "wikitext", "wikitext-2-raw-v1", split="train" if split == "calibration" else "test")
        # SparseGPT and Wanda join the training split with spaces and the test split with blank lines.
        return (" " if split == "calibration" else "\n\n").join(rows["text"])
    shard = "en/c4-train.00000-of-01024.json.gz" if split == "calibration" else "en/c4-validation.00000-of-00008.json.gz"
    rows = _hub(source, "allenai/c4", data_files={"data": shard}, split="data")
    # The papers evaluate on the first 1100 validation documents (then 256 windows, see --eval-tokens).
    return " ".join(rows[:1100]["text"] if split == "evaluation" else rows[:20000]["text"])


def _split_at_paragraph(text: str, share: float) -> tuple[str, str]:
    cut = text.find("\n\n", int(len(text) * (1 - share)))
    cut = len(text) // 2 if cut < 0 else cut
    return text[:cut], text[cut + 2 :]


def check_source(source: str) -> None:
    if source in ("pydoc", "wikitext2", "c4"):
        return
    if source.startswith(("text:", "pysource:")) and not source.endswith(":"):
        return
    raise InputError(f"unknown text source {source!r}; choose one of {', '.join(SOURCES)}")


def short_name(source: str) -> str:
    """A source's short name for a column or a label: 'text:/data/legal.txt' -> 'legal', 'pysource:csv+json' ->
    'pysource', 'wikitext2' -> 'wikitext2'."""
    return Path(source[5:]).stem if source.startswith("text:") else source.split(":")[0]


def readable(source: str) -> None:
    """Read `source` once, so that a missing file, a folder without text or a hub dataset out of reach is
    refused before any model loads, not after the pruning that its measurement follows."""
    _text(source, "evaluation", other="")


def texts(calibration: str, evaluation: str) -> tuple[str, str]:
    """(calibration text, evaluation text); the same offline source is split so that they never overlap."""
    check_source(calibration)
    check_source(evaluation)
    return calibration_text(calibration, evaluation), evaluation_text(evaluation, calibration)


def calibration_text(source: str, evaluation: str) -> str:
    """The text calibration windows of `source` are drawn from, the evaluation text being `evaluation`'s."""
    return _text(source, "calibration", evaluation)


def evaluation_text(source: str, calibration: str) -> str:
    """The evaluation text of `source`, the calibration text being `calibration`'s."""
    return _text(source, "evaluation", calibration)


def _text(source: str, split: str, other: str) -> str:
    """One split of `source`, reading only that source: a hub dataset's split, or an offline source whole,
    or its head (calibration) or tail (evaluation) where `other`, the other split's source, is the same."""
    check_source(source)
    if source in ("wikitext2", "c4"):
        return hub_text(source, split)
    if source == "pydoc":
        text = pydoc_text()
    elif source.startswith("pysource:"):
        text = python_source(source.removeprefix("pysource:"))
    else:
        text = file_text(source.removeprefix("text:"))
    if source != other:
        return text
    head, tail = _split_at_paragraph(text, EVAL_SHARE)
    return head if split == "calibration" else tail


def calibration_samples(tokenizer, text: str, nsamples: int, seqlen: int, seed: int) -> torch.Tensor:
    """(nsamples, seqlen) token ids: random windows of the tokenized text, sampled as the Wanda loaders do."""
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids[0]
    n = ids.numel()
    if n <= seqlen + 1:
        raise InputError(f"calibration text has {n} tokens, not enough for windows of {seqlen}")
    # Its own generator, drawing what random.seed(seed); random.randint(...) draws, without resetting the
    # global one that the search's evolution runs on.
    rng = random.Random(seed)
    starts = [rng.randint(0, n - seqlen - 1) for _ in range(nsamples)]
    return torch.stack([ids[i : i + seqlen] for i in starts])


def evaluation_tokens(tokenizer, text: str) -> torch.Tensor:
    """(1, tokens): the whole evaluation text tokenized at once, as the papers' perplexity does."""
    return tokenizer(text, return_tensors="pt").input_ids


def generate_self_data(model, tokenizer, nsamples: int, seqlen: int, seed: int, device: torch.device,
                       skip: int = 0) -> Iterator[dict]:
    """Texts the model writes itself (after LLM-QAT, as Shin et al. generate calibration data): a first token
    uniform over the vocabulary, greedy decoding to 5 tokens, then sampling (top-k 50, temperature 1) to
    `seqlen` tokens. Sample i draws from its own generator seeded by (seed, i): the same file for a seed,
    and samples `skip` to `nsamples` - 1 alone are the rest of it (a killed run goes on where it stopped).
    Their English filter (an unseeded language detector) is left out. Each sample is {"text", "ids"}: the
    text as theirs stores it, and the exact tokens (decoding and encoding again may not give them back);
    each is yielded as soon as it is written, minutes apart on a CPU."""
    for i in range(skip, nsamples):
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed * 1_000_003 + i)
            first = torch.randint(len(tokenizer), (1, 1), device=device)
            start = model.generate(first, do_sample=False, max_length=5, pad_token_id=tokenizer.eos_token_id)
            ids = model.generate(start, do_sample=True, top_k=50, top_p=1.0, temperature=1.0, max_length=seqlen,
                                 min_length=seqlen, pad_token_id=tokenizer.eos_token_id)
        yield {"text": tokenizer.decode(ids[0], skip_special_tokens=True), "ids": ids[0].tolist()}


def read_self_data(path: str, nsamples: int) -> list[dict]:
    """The first `nsamples` lines of a JSONL file, each {"text": ...} and maybe "ids" (what `evolve
    generate-data` writes), checked before any model loads."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as error:
        raise InputError(f"cannot read self-data {path}: {error.strerror}") from None
    if nsamples > len(lines):
        raise InputError(f"--self-nsamples {nsamples} is more than the {len(lines)} samples in {path}")
    return _records(path, lines[:nsamples], lambda r: isinstance(r.get("text"), str) or isinstance(r.get("ids"), list))


def _records(path: str, lines: list[str], usable) -> list[dict]:
    """Each of a JSONL file's `lines` as an object that `usable` takes; InputError naming the first that is not."""
    import json

    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not (isinstance(record, dict) and usable(record)):
            raise InputError(f"{path} line {number} is not a JSON object with a 'text'")
        records.append(record)
    return records


def self_samples(tokenizer, samples: list[dict], seqlen: int) -> torch.Tensor:
    """(len(samples), seqlen) token ids: each sample's first `seqlen` tokens, its "ids" when it has them."""
    out = []
    for number, sample in enumerate(samples, start=1):
        ids = torch.tensor(sample["ids"]) if "ids" in sample else tokenizer(sample["text"], return_tensors="pt", add_special_tokens=False).input_ids[0]
        if ids.numel() < seqlen:
            raise InputError(f"self-data line {number} has {ids.numel()} tokens, fewer than seqlen {seqlen}")
        out.append(ids[:seqlen])
    return torch.stack(out)
