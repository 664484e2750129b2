"""The shipped offline tasks, built from text that is on every machine (the Python documentation by
default, or any text:PATH): deterministic, and only from the evaluation split, never from calibration text.

    last-word     LAMBADA-style: a passage with its final word removed; acc = the model's greedy
                  continuation is the word, ppl = exp(-mean log-likelihood of the word)
    continuation  HellaSwag-style: which of four endings follows a passage, three drawn from elsewhere in
                  the text; acc = log-likelihood argmax, acc_norm = the same per byte of ending

lm-eval calls these builders through each task's YAML (`custom_dataset`), with the task manager's
metadata (calib, text) as keyword arguments.
"""
import random
import re
from functools import lru_cache

from pruners import data
from pruners.errors import InputError

CONTEXT_WORDS = 128  # a passage's context keeps at most its last 128 words (about 200 tokens)
ENDING_WORDS = 12  # continuation: the words of each ending
MIN_WORDS = 24  # a paragraph shorter than this carries too little context to predict from
MIN_EXAMPLES = 4  # fewer examples than this make no task (and continuation needs three other endings)
WORD = re.compile(r"[A-Za-z]{3,}")  # a last word worth predicting: letters only, three or more


@lru_cache(maxsize=4)
def _texts(calib: str, text: str) -> tuple[list[list[str]], str]:
    """(the evaluation split's paragraphs as word lists, the calibration text with whitespace collapsed)."""
    calibration, evaluation = data.texts(calib, text)
    paragraphs = [p.split() for p in re.split(r"\n\s*\n", evaluation)]
    return [p for p in paragraphs if len(p) >= MIN_WORDS], " ".join(calibration.split())


def _examples(kind: str, calib: str, text: str) -> list[dict]:
    paragraphs, calibration = _texts(calib, text)
    seen, docs = set(), []
    endings = [" ".join(p[-ENDING_WORDS:]) for p in paragraphs]
    rng = random.Random(0)  # continuation's distractors and gold positions
    for i, words in enumerate(paragraphs):
        passage = " ".join(words[-(CONTEXT_WORDS + 1):])
        if passage in seen or passage in calibration:  # repeated boilerplate; anything calibration saw
            continue
        seen.add(passage)
        if kind == "last-word":
            last = words[-1].rstrip(".,;:!?)'\"")
            if WORD.fullmatch(last):
                context = " ".join(words[-(CONTEXT_WORDS + 1):-1])
                docs.append({"context": context, "target": last})
        else:
            others = [e for j, e in enumerate(endings) if j != i and e != endings[i]]
            if len(others) < 3:
                continue
            choices = rng.sample(others, 3)
            label = rng.randrange(4)
            choices.insert(label, endings[i])
            context = " ".join(words[:-ENDING_WORDS][-CONTEXT_WORDS:])
            docs.append({"context": context, "choices": choices, "label": label})
    return docs


def examples(kind: str, calib: str = "pydoc", text: str = "pydoc") -> list[dict]:
    """The task's documents; a text too short for MIN_EXAMPLES of them is an InputError."""
    docs = _examples(kind, calib, text)
    if len(docs) < MIN_EXAMPLES:
        raise InputError(
            f"task {kind}: the text {text} gives {len(docs)} examples, at least {MIN_EXAMPLES} are needed "
            f"(paragraphs of {MIN_WORDS}+ words, apart by blank lines)"
        )
    return docs


def _dataset(kind: str, calib: str, text: str):
    import datasets

    return {"test": datasets.Dataset.from_list(examples(kind, calib, text))}


def last_word(calib: str = "pydoc", text: str = "pydoc", **_metadata):
    return _dataset("last-word", calib, text)


def continuation(calib: str = "pydoc", text: str = "pydoc", **_metadata):
    return _dataset("continuation", calib, text)
