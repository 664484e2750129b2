"""Fidelity of layer-drop: our block scores and choices against PruneGPT's own `calculate_bi` and
`prune_model_blocks` (nyunAI/PruneGPT, src/pruner.py), on one model load and the same calibration tokens.

    git clone https://github.com/nyunAI/PruneGPT /tmp/prunegpt
    python benchmarks/fidelity_layerdrop.py --prunegpt /tmp/prunegpt

Their functions run unchanged; adapted from the outside only: their dataloader yields our calibration
samples, and the tokenizer they call returns those tokens (full windows: no padding), where they tokenize
WikiText-2's test split. Printed per criterion and token choice: both score vectors' largest difference over
blocks 0..L-2 and on the last block (theirs takes the last hidden state after the final norm, ours before
it), and the blocks each removes at 2, 4 and 6, with no block skipped and with the first and last kept.
Expected: with `last` the same choices; with `all` theirs takes the cosine over the tokens (F.cosine_similarity's
default dim=1) instead of over the hidden dimension, so the scores differ and so may the choices.
"""
import argparse
import contextlib
import io
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pruners  # noqa: E402
from evolve.host import Host  # noqa: E402
from pruners import models  # noqa: E402


class Tokens(dict):
    """What their `tokenizer(batch['text'], ...)` returns for a batch of our samples."""

    def to(self, device):
        return Tokens({k: v.to(device) for k, v in self.items()})


def their_tokenizer(batch, **_):
    return Tokens(input_ids=batch, attention_mask=torch.ones_like(batch))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prunegpt", required=True, help="a checkout of nyunAI/PruneGPT")
    parser.add_argument("--nsamples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.prunegpt) / "src"))
    from pruner import ModelPruner

    host = Host("smollm2-135m", "float32", "cpu", nsamples=args.nsamples, seqlen=args.seqlen, log=lambda _: None)
    model, calibration, cpu = host.model, host.calibration, torch.device("cpu")
    L = len(models.blocks(model))
    loader = [{"text": batch} for batch in calibration.split(8)]
    print(f"smollm2-135m, {L} blocks, {args.nsamples} x {args.seqlen} calibration tokens from pydoc")
    print("| criterion | tokens | max diff blocks 0..L-2 | last block ours / theirs | k | skip | ours | theirs |")
    print("|---|---|---|---|---|---|---|---|")
    for criterion, their_method in (("angular", "angular_distance"), ("cosine", "cosine_similarity")):
        for tokens in ("last", "all"):
            ours = pruners.method("layer-drop", criterion=criterion, tokens=tokens).distances(model, calibration, cpu, 1)  # (L,)
            with contextlib.redirect_stderr(io.StringIO()):  # their tqdm bar
                theirs = ModelPruner(model).calculate_bi(loader, their_tokenizer, their_method, tokens)
            diff = max(abs(a - b) for a, b in zip(ours.tolist()[:-1], theirs[:-1]))
            for k in (2, 4, 6):
                for skip in ((), (0, L - 1)):
                    mine = pruners.method("layer-drop", criterion=criterion, tokens=tokens, skip=skip).select(ours, L, k)
                    chosen = _their_choice(ModelPruner(model), list(theirs), k, list(skip))
                    print(f"| {criterion} | {tokens} | {diff:.2e} | {ours[-1]:.4f} / {theirs[-1]:.4f} | {k} | "
                          f"{','.join(map(str, skip)) or '-'} | {mine} | {chosen} |", flush=True)


def _their_choice(pruner, scores: list[float], k: int, skip: list[int]) -> list[int]:
    """The blocks their prune_model_blocks removes: it returns a copy of the model that holds the original's
    kept blocks (and renumbers their layer_idx, which our scoring, without a KV cache, never reads)."""
    pruned = pruner.prune_model_blocks(scores, k, skip)
    kept = {id(b) for b in pruned.model.layers}
    return [i for i, block in enumerate(pruner.model.model.layers) if id(block) not in kept]


if __name__ == "__main__":
    main()
