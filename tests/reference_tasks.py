"""The shipped tasks' accuracies by a plain loop, one example at a time, without lm-eval: the reference
its numbers are tested against (tests/test_tasks.py) and timed against (benchmarks/task_speed.py)."""
import math

import torch


@torch.no_grad()
def loglikelihood(model, tokenizer, context: str, continuation: str) -> tuple[float, bool]:
    """(log p(continuation | context), whether greedy decoding yields exactly the continuation's tokens)."""
    ctx = tokenizer(context).input_ids
    whole = tokenizer(context + continuation).input_ids
    target = torch.tensor(whole[len(ctx):])  # the continuation's tokens as the pair tokenizes them
    logits = model(input_ids=torch.tensor([whole[:-1]], device=model.device)).logits[0].float()
    logprobs = logits[len(ctx) - 1 :].log_softmax(-1).cpu()  # (len(target), V)
    return logprobs.gather(1, target[:, None]).sum().item(), bool((logprobs.argmax(-1) == target).all())


def scores(model, tokenizer, last_word: list[dict], continuation: list[dict]) -> dict[str, float]:
    """The columns of the tasks given examples of (either list may be empty)."""
    out = {}
    if last_word:
        lls, greedy = zip(*(loglikelihood(model, tokenizer, d["context"], " " + d["target"]) for d in last_word))
        out |= {"last-word acc": sum(greedy) / len(greedy), "last-word ppl": math.exp(-sum(lls) / len(lls))}
    if continuation:
        acc = acc_norm = 0
        for d in continuation:
            ll = [loglikelihood(model, tokenizer, d["context"], " " + c)[0] for c in d["choices"]]
            acc += max(range(len(ll)), key=ll.__getitem__) == d["label"]
            acc_norm += max(range(len(ll)), key=lambda i: ll[i] / len(d["choices"][i])) == d["label"]
        out |= {"continuation acc": acc / len(continuation), "continuation acc_norm": acc_norm / len(continuation)}
    return out
