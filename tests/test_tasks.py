"""Zero-shot scores through lm-eval: the shipped offline tasks, their numbers against a plain loop, and the
score protocol."""
import csv
import types
from typing import ClassVar

import pytest
import torch

import reference_tasks
from evolve.cli import main
from evolve.scores import SCORES, Score, score
from evolve.tasks import build
from pruners import data


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("kind", ["last-word", "continuation"])
def test_shipped_tasks_build_identically_from_the_evaluation_split_alone(kind):
    first = build.examples(kind)
    build._texts.cache_clear()
    assert build.examples(kind) == first and len(first) >= 100
    calibration, evaluation = (_flat(t) for t in data.texts("pydoc", "pydoc"))
    for doc in first:
        passage = doc["context"] + " " + (doc["target"] if kind == "last-word" else doc["choices"][doc["label"]])
        assert doc["context"] in evaluation
        assert passage not in calibration
    if kind == "continuation":
        assert {d["label"] for d in first} == {0, 1, 2, 3}
        assert all(len(set(d["choices"])) == 4 for d in first)


def test_a_text_too_short_for_a_task_is_refused(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text(" ".join(["word"] * 30) + ".\n\nToo short.")
    with pytest.raises(Exception, match="at least 4 are needed"):
        build.examples("last-word", "pydoc", f"text:{short}")


def test_lm_eval_scores_equal_a_plain_loop(tiny_dir):
    from pruners import models

    model, tokenizer = models.load(tiny_dir)
    host = types.SimpleNamespace(model=model, tokenizer=tokenizer, device=torch.device("cpu"), place=lambda: None)
    tasks = score("tasks", tasks=["last-word", "continuation"], limit=24)
    tasks.check()
    got = tasks.evaluate(host)
    want = reference_tasks.scores(model, tokenizer, build.examples("last-word")[:24], build.examples("continuation")[:24])
    assert got.keys() == want.keys()
    for column in want:
        assert got[column] == pytest.approx(want[column], rel=1e-4), column
    assert 0 < want["continuation acc"] < 1  # a number that could have come out otherwise


class Fake(Score):
    """A score registered by a test: it must appear as a column of its own."""

    name: ClassVar[str] = "fake"
    value: float = 0.25

    def evaluate(self, host) -> dict[str, float]:
        return {"fake": self.value + len(host.windows)}


def test_a_registered_score_is_a_column(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(SCORES, "fake", f"{__name__}:Fake")
    config = tmp_path / "c.yaml"
    config.write_text("evaluate:\n  scores: [perplexity, fake]\n  options: {fake: {value: 0.5}}\n")
    out = tmp_path / "cmp"
    assert main(["compare", "--config", str(config), "--model", tiny_dir, "--nsamples", "2", "--seqlen", "32",
                 "--eval-tokens", "256", "--methods", "dense,magnitude", "--out", str(out)]) == 0
    with (out / "compare.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [float(r["fake"]) for r in rows] == [8.5, 8.5]  # 256 tokens = 8 windows of 32
    assert all(float(r["perplexity"]) > 1 for r in rows)


def test_only_perplexities_are_lower_is_better():
    perplexity, tasks = score("perplexity"), score("tasks", tasks=["last-word"])
    columns = {"perplexity": True, "last-word ppl": True, "last-word acc": False, "continuation acc_norm": False}
    for column, lower in columns.items():
        assert any(s.lower_is_better(column) for s in (perplexity, tasks)) == lower, column
