"""Fidelity of channels: our retrain-free channel choice against Intel Neural Compressor's own pruner
(`pruning_type: retrain_free`, pattern `channelx1` on every MLP's down projection, global scope), on one
model load and the same calibration samples, then both pruned models measured the same way.

    pip install --no-deps --target /tmp/incpkgs neural-compressor==3.7.1 deprecated prettytable schema \\
        py-cpuinfo wrapt wcwidth "setuptools<81" opencv-python-headless pycocotools
    PYTHONPATH=/tmp/incpkgs python benchmarks/fidelity_channels.py

(--no-deps and a separate folder: INC pins numpy<2, which this project's environment does not need to
give up; its pruner runs with numpy 2.) Adapted from the outside only: their `prepare_pruning` gets a
dataloader of our samples, one per step, so each step's mask gradient is one sample's, as ours is.
INC's one-shot schedule (start_step == end_step) chooses the mask before it has gathered any gradient
(all scores zero), so this runs their iterative schedule with two pruning steps, at step 0 (target 0,
nothing pruned) and at step N, where the scores hold the gradients of the N samples before it: they get
N + 1 samples, the last one only to trigger that step; we get the first N.

Printed: channels per layer where the two choices differ, the Jaccard overlap of the removed sets
(ours with INC's rearrangement, and both without it), then perplexity on the pydoc evaluation tokens and
last-word accuracy for dense, INC's masked model and ours.
"""
import argparse
import contextlib
import io
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pruners  # noqa: E402
from evolve.host import Host  # noqa: E402
from evolve.scores import score  # noqa: E402
from pruners import models  # noqa: E402
from pruners.spec import Sparsity  # noqa: E402


def their_removed(model, calibration: torch.Tensor, ratio: float) -> list[set[int]]:
    """The channels INC's retrain-free pruner removes from each block's MLP, its model left masked."""
    from neural_compressor import WeightPruningConfig
    from neural_compressor.compression.pruner import prepare_pruning

    steps = len(calibration) - 1
    config = WeightPruningConfig(
        [{"pruning_type": "retrain_free", "pruning_scope": "global", "op_names": ["down_proj"], "pattern": "channelx1",
          "pruning_op_types": ["Linear"], "max_sparsity_ratio_per_op": 0.98}],
        target_sparsity=ratio, start_step=0, end_step=steps, pruning_frequency=steps,
    )
    loader = torch.utils.data.DataLoader([{"input_ids": s, "labels": s} for s in calibration], batch_size=1)
    logging.getLogger("neural_compressor").setLevel(logging.WARNING)
    with contextlib.redirect_stderr(io.StringIO()):  # their progress bar and per-layer log
        pruning = prepare_pruning(model, config, dataloader=loader)
    masks = {k: m for p in pruning.pruners for k, m in p.masks.items()}  # (1, intermediate) per down projection
    return [set((masks[f"model.layers.{i}.mlp.down_proj"].flatten() == 0).nonzero().flatten().tolist())
            for i in range(len(models.blocks(model)))]


def our_removed(model, calibration, ratio: float, rearrange: bool) -> list[set[int]]:
    kept = pruners.method("channels", rearrange=rearrange).choose(model, calibration, Sparsity.parse("channels", ratio), torch.device("cpu"))
    width = models.mlp(models.blocks(model)[0])[1].in_features  # the dense model's: nothing is slim yet
    return [set(range(width)) - set(k.tolist()) for k in kept]


def jaccard(a: list[set[int]], b: list[set[int]]) -> float:
    inter = sum(len(x & y) for x, y in zip(a, b))
    return inter / max(1, sum(len(x | y) for x, y in zip(a, b)))


def measure(host, limit: int) -> str:
    ppl = score("perplexity").evaluate(host)["perplexity"]
    with contextlib.redirect_stderr(io.StringIO()):  # lm-eval's progress bars
        acc = score("tasks", tasks=["last-word"], limit=limit).evaluate(host)["last-word acc"]
    return f"{ppl:.3f} | {acc:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nsamples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--sparsity", type=float, default=0.2)
    parser.add_argument("--eval-tokens", type=int, default=16384)
    parser.add_argument("--limit", type=int, default=146, help="last-word examples (pydoc has 146)")
    args = parser.parse_args()
    host = Host("smollm2-135m", "float32", "cpu", nsamples=args.nsamples + 1, seqlen=args.seqlen,
                eval_tokens=args.eval_tokens, log=lambda _: None)
    calibration, width = host.calibration, models.mlp(models.blocks(host.model)[0])[1].in_features
    print(f"smollm2-135m, {len(models.blocks(host.model))} blocks, {args.nsamples} x {args.seqlen} pydoc calibration "
          f"tokens, {args.sparsity:.0%} of MLP channels, {args.eval_tokens} evaluation tokens", flush=True)

    ours = our_removed(host.model, calibration[:-1], args.sparsity, rearrange=True)
    diagonal = our_removed(host.model, calibration[:-1], args.sparsity, rearrange=False)
    dense = measure(host, args.limit)
    theirs = their_removed(host.model, calibration, args.sparsity)
    inc_scores = measure(host, args.limit)  # their model, masked in place
    host.restore()
    pruners.method("channels").prune(host.model, calibration[:-1], Sparsity.parse("channels", args.sparsity), torch.device("cpu"))
    our_scores = measure(host, args.limit)

    print(f"removed: INC {sum(map(len, theirs))}, ours {sum(map(len, ours))} of {len(ours) * width}")
    print(f"Jaccard of the removed sets: rearranged {jaccard(ours, theirs):.4f}, "
          f"ours rearranged vs ours diagonal {jaccard(ours, diagonal):.4f}")
    print("| block | INC removes | ours | only INC | only ours |")
    print("|---|---|---|---|---|")
    for i, (t, o) in enumerate(zip(theirs, ours)):
        if t != o:
            print(f"| {i} | {len(t)} | {len(o)} | {sorted(t - o)[:8]} | {sorted(o - t)[:8]} |")
    print("\n| model | perplexity | last-word acc |\n|---|---|---|")
    print(f"| dense | {dense} |\n| INC retrain-free | {inc_scores} |\n| ours (channels) | {our_scores} |")


if __name__ == "__main__":
    main()
