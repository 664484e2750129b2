import logging
import os
from functools import lru_cache, partial
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from evolve.scores import Score
from pruners import data
from pruners.errors import InputError

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"  # the shipped tasks' YAML files
SHIPPED = ("last-word", "continuation")
STANDARD = ("boolq", "rte", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa", "lambada_openai")
METRICS = {"acc": "acc", "acc_norm": "acc_norm", "perplexity": "ppl"}  # lm-eval's names -> our column suffixes


def _offline_when_unreachable() -> None:
    """Without a reachable hub, lm-eval's datasets answer from the local cache alone instead of retrying."""
    from pruners.models import hub_reachable

    if not hub_reachable():
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


@lru_cache(maxsize=4)
def task_manager(calib: str, text: str, defaults: bool):
    """lm-eval's task manager with the shipped tasks on its include path; (calib, text) reach their
    builders as metadata. defaults: also index lm-eval's own tasks (about 15,000 YAML files, 15-30 s)."""
    _offline_when_unreachable()
    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # per-task notes on defaults it fills in
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=defaults, metadata={"calib": calib, "text": text})


class Tasks(Score):
    """Accuracy through lm-eval (`simple_evaluate` on the model in memory, wrapped by `HFLM`): the shipped
    offline tasks last-word and continuation (evolve/tasks/), or any task lm-eval can reach or has cached,
    e.g. the papers' boolq, rte, hellaswag, winogrande, arc_easy, arc_challenge, openbookqa, lambada_openai.
    Columns are "<task> acc", "<task> acc_norm" and "<task> ppl", as each task reports them.

        evaluate: {tasks: [last-word, continuation], limit: 200}
    """

    name: ClassVar[str] = "tasks"
    tasks: list[str] = Field(min_length=1)
    limit: int | None = Field(None, gt=0)  # examples per task; None: every example
    text: str = "pydoc"  # the shipped tasks are built from this source's evaluation split ...
    calib: str = "pydoc"  # ... which never overlaps this calibration source
    batch_size: int = Field(8, gt=0)  # requests per forward pass

    def _manager(self):
        return task_manager(self.calib, self.text, not set(self.tasks) <= set(SHIPPED))

    def check(self) -> None:
        """Names and data are checked before any model loads: the shipped tasks are built, any other task's
        data must be reachable or cached."""
        data.check_source(self.text)
        manager = self._manager()
        known = set(manager.all_tasks)
        for task in self.tasks:
            if task not in known:
                raise InputError(f"unknown task {task!r}; offline tasks: {', '.join(SHIPPED)}; "
                                 f"with network or cache also e.g. {', '.join(STANDARD)}")
        from evolve.tasks import build

        for task in self.tasks:
            if task in SHIPPED:
                build.examples(task, self.calib, self.text)
                continue
            try:
                manager.load([task])
            except Exception as error:  # datasets raises many types when it can reach neither hub nor cache
                raise InputError(f"task {task}: its data cannot be reached ({type(error).__name__}); "
                                 f"offline tasks: {', '.join(SHIPPED)}") from None

    def evaluate(self, host) -> dict[str, float]:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM

        host.place()
        lm = HFLM(pretrained=host.model, tokenizer=host.tokenizer, batch_size=self.batch_size, device=str(host.device))
        if os.environ.get("TQDM_DISABLE"):  # no terminal (evolve.cli): lm-eval's request bars say disable=False themselves
            for request in ("loglikelihood", "loglikelihood_rolling", "generate_until"):
                setattr(lm, request, partial(getattr(lm, request), disable_tqdm=True))
        out = simple_evaluate(model=lm, tasks=list(self.tasks), limit=self.limit, task_manager=self._manager(),
                              bootstrap_iters=0, log_samples=False, verbosity="ERROR")
        values = {}
        for task in self.tasks:
            for key, value in out["results"][task].items():
                metric, _, _filter = key.partition(",")
                if metric in METRICS and isinstance(value, (int, float)):
                    values[f"{task} {METRICS[metric]}"] = float(value)
        return values

    def lower_is_better(self, column: str) -> bool:
        return column.endswith(" ppl")
