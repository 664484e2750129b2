"""Seconds per 100 examples of each shipped zero-shot task on the embedded model, through lm-eval and
through a plain loop computing the same accuracies one example at a time (tests/reference_tasks.py),
in one run on one model load: the ratio is lm-eval's overhead (aim: <= 1.2)."""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import reference_tasks  # noqa: E402

from evolve.host import Host  # noqa: E402
from evolve.scores import score  # noqa: E402
from evolve.tasks import build  # noqa: E402


def plain(host, task: str, examples: list[dict]) -> dict[str, float]:
    last_word, continuation = (examples, []) if task == "last-word" else ([], examples)
    return reference_tasks.scores(host.model, host.tokenizer, last_word, continuation)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=100, help="examples per task")
    parser.add_argument("--batch-size", type=int, default=8, help="lm-eval's requests per forward pass")
    args = parser.parse_args()
    host = Host("smollm2-135m", nsamples=1, seqlen=128, eval_tokens=128, log=lambda m: None)
    for task in ("last-word", "continuation"):
        tasks = score("tasks", tasks=[task], limit=args.limit, batch_size=args.batch_size)
        tasks.check()  # builds the task and lm-eval's task index outside the timing
        examples = build.examples(task)[: args.limit]
        start = time.perf_counter()
        ours = tasks.evaluate(host)
        lm_eval_s = time.perf_counter() - start
        start = time.perf_counter()
        theirs = plain(host, task, examples)
        plain_s = time.perf_counter() - start
        agree = all(abs(ours[k] - v) <= 1e-4 * max(1, abs(v)) for k, v in theirs.items() if k in ours)
        per100 = 100 / len(examples)
        print(f"{task:13s} {len(examples)} examples   lm-eval {lm_eval_s * per100:6.1f} s/100   plain loop "
              f"{plain_s * per100:6.1f} s/100   ratio {lm_eval_s / plain_s:4.2f}   same scores: {agree}", flush=True)


if __name__ == "__main__":
    main()
