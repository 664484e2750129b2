"""Scores: what is measured on a model after pruning. A score is one file and one line in SCORES
("module:Class", loaded lazily); each returns a dictionary of named values that land in a row's scores.

    perplexity  the papers' protocol on the host's evaluation windows
    tasks       accuracy through lm-eval: the shipped offline tasks, or any task lm-eval can reach
"""
import importlib
from abc import abstractmethod
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from pruners.errors import InputError

SCORES = {
    "perplexity": "evolve.scores.perplexity:Perplexity",
    "tasks": "evolve.scores.tasks:Tasks",
}


class Score(BaseModel):
    """A measurement: its fields are its options (unknown keys are refused), `evaluate` does the work."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str]

    def check(self) -> None:
        """Refuse bad options and unreachable data before any model loads."""

    def prepare(self, host) -> None:
        """What needs the loaded host's tokenizer, done before any pruning: a text found too short fails
        then, not after the work."""

    @abstractmethod
    def evaluate(self, host) -> dict[str, float]:
        """{column: value} for the model the host holds now; lower_is_better tells plots which way is good."""

    def lower_is_better(self, column: str) -> bool:
        return False


def score(name: str, **options) -> Score:
    """A configured score; an unknown name or a bad option is an InputError that names it."""
    if name not in SCORES:
        raise InputError(f"unknown score {name!r}; choose one of {', '.join(SCORES)}")
    module, cls = SCORES[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)(**options)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise InputError(f"score {name}: option {where}: {problem['msg']}") from None
