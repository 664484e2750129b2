from collections import deque
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from pruners import models
from pruners.base import Pruner
from pruners.errors import InputError
from pruners.walker import boundaries


def distance(a: torch.Tensor, b: torch.Tensor, criterion: str) -> torch.Tensor:
    """(N,) distance between the rows of two (N, D) hidden states, over the hidden dimension.
    angular: arccos(cos) / pi, in [0, 1]; cosine: 1 - cos, ShortGPT's block influence."""
    cos = F.cosine_similarity(a.float(), b.float(), dim=-1)
    return torch.arccos(cos.clamp(-1.0, 1.0)) / torch.pi if criterion == "angular" else 1 - cos


class LayerDrop(Pruner):
    """Layer drop: remove the decoder blocks that change the hidden state least (ShortGPT, Men et al. 2024;
    PruneGPT; Gromov et al. 2024, "The Unreasonable Ineffectiveness of the Deeper Layers").

    A block's importance is the distance between the hidden state entering it and the one leaving it,
    averaged over calibration tokens (`tokens: last`, the last token of each sample, or `all`); the k
    least important blocks go at once. `contiguous` is Gromov's variant: the run of k consecutive blocks
    whose input and output are closest. `skip` lists blocks that stay (negative indices count from the end).

    Against PruneGPT: the cosine is taken per token over the hidden dimension (their `all` takes it over
    the tokens), the last block's output is taken before the final norm, and a skipped block can never be
    dropped (theirs only gets the highest score, which ties can still drop).

        method: layer-drop
        options: {criterion: angular, tokens: last, skip: [0, -1], contiguous: false}
    """

    name: ClassVar[str] = "layer-drop"
    patterns: ClassVar[tuple[str, ...]] = ("blocks",)
    criterion: Literal["angular", "cosine"] = "angular"
    tokens: Literal["last", "all"] = "last"
    skip: tuple[int, ...] = ()
    contiguous: bool = False
    batch_size: int = 8  # calibration samples per forward

    def title(self) -> str:
        return f"layer-drop {'contiguous ' if self.contiguous else ''}{self.criterion}/{self.tokens}"

    def _rows(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N, D) rows a (B, T, D) hidden state is compared by."""
        return hidden[:, -1, :] if self.tokens == "last" else hidden.reshape(-1, hidden.shape[-1])

    def distances(self, model, calibration, device, span: int) -> torch.Tensor:
        """(L - span + 1,) mean distance between the input of block l and the output of block l + span - 1."""
        L = len(models.blocks(model))
        sums = torch.zeros(L - span + 1, dtype=torch.float64)
        window = deque(maxlen=span + 1)  # the last span + 1 boundaries, as (N, D) rows per batch
        for i, states in boundaries(model, calibration, device, self.batch_size):
            window.append([self._rows(h) for h in states])
            if i >= span:
                pairs = zip(window[0], window[-1])
                sums[i - span] = sum(distance(a, b, self.criterion).double().sum().item() for a, b in pairs)
        rows = calibration.shape[0] * (1 if self.tokens == "last" else calibration.shape[1])
        return sums / rows

    def choose(self, model, calibration, device, k: int) -> list[int]:
        """The blocks to remove, in increasing order; bad options fail before any forward pass."""
        L = len(models.blocks(model))
        self.candidates(L, k)
        return self.select(self.distances(model, calibration, device, k if self.contiguous else 1), L, k)

    def candidates(self, L: int, k: int) -> list[int]:
        """What may go: blocks not skipped, or, contiguous, the first blocks of runs of k that skip none."""
        for i in self.skip:
            if not -L <= i < L:
                raise InputError(f"--skip index {i} is out of range for a model of {L} blocks")
        kept = {i % L for i in self.skip}
        if not 0 < k < L:
            raise InputError(f"cannot remove {k} of {L} blocks: this model has {L}, and one must stay")
        if k > L - len(kept):
            raise InputError(f"cannot remove {k} of {L} blocks with {len(kept)} kept by --skip")
        if not self.contiguous:
            return [i for i in range(L) if i not in kept]
        starts = [l for l in range(L - k + 1) if not kept & set(range(l, l + k))]
        if not starts:
            raise InputError(f"no run of {k} consecutive blocks avoids the skipped blocks {sorted(kept)}")
        return starts

    def check_model(self, model, spec):
        super().check_model(model, spec)
        self.candidates(len(models.blocks(model)), spec.blocks)

    def select(self, scores: torch.Tensor, L: int, k: int) -> list[int]:
        """The k blocks of L to remove, in increasing order, from the distances of single blocks (L,) or,
        contiguous, of every run of k blocks (L - k + 1,). Ties go to the lower index."""
        ranked = sorted(self.candidates(L, k), key=lambda i: (scores[i].item(), i))
        return list(range(ranked[0], ranked[0] + k)) if self.contiguous else sorted(ranked[:k])

    def prune(self, model, calibration, spec, device, gradients=None):
        models.remove_blocks(model, self.choose(model, calibration, device, spec.blocks))
