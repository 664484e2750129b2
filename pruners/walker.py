"""One layer walker for every method, the sequential scheme of Wanda and SparseGPT.

Calibration runs through block i while the statistics each method asks for are gathered, the block is
pruned, and the pruned block's outputs become block i+1's inputs. One block is on the device at a time,
so a model larger than the device still prunes.

A method that refits what it keeps asks for dense targets as well: the dense block's outputs on the
pruned path's inputs ("block"), and/or the dense model's own path run side by side ("path"). Both come
from running the block before it is pruned, so no second copy of the model is ever held.
"""
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn

from pruners import models
from pruners.device import step
from pruners.stats import COLLECTORS

Dense = Literal["block", "path"]


@dataclass
class Step:
    """What a method sees of block `index` before it prunes it."""

    index: int
    block: nn.Module
    linears: dict[str, nn.Linear]  # the block's target linears by name ('mlp.up_proj')
    stats: dict[str, dict[str, torch.Tensor]]  # by linear name, then statistic name
    inputs: list  # [(hidden (B, T, D), args, kwargs)] entering the block on the pruned path
    block_targets: list[torch.Tensor] | None  # [(B, T, D)] the dense block on those inputs, when asked for
    path_targets: list[torch.Tensor] | None  # [(B, T, D)] the dense model's own outputs of the block, when asked for
    last: bool = False  # the model's last block
    previous: "Step | None" = None  # block index - 1's step (its statistics dropped), when asked for


PruneBlock = Callable[[Step], None]


class _StandIn(nn.Module):
    """Takes a block's place while the model runs up to block 0: records what block 0 receives and returns
    the hidden states untouched, so no block computes. Attributes the model's loop reads from its blocks
    (Qwen2's `attention_type`, say) come from the real block."""

    def __init__(self, block: nn.Module, record: list | None):
        super().__init__()
        object.__setattr__(self, "_block", block)  # not registered: the stand-in owns no parameters
        object.__setattr__(self, "_record", record)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(object.__getattribute__(self, "_block"), name)

    def forward(self, hidden_states, *args, **kwargs):
        if self._record is not None:
            self._record.append((hidden_states, args, kwargs))
        return hidden_states


def _to(obj, device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


@torch.no_grad()
def block_inputs(model, calibration: torch.Tensor, device: torch.device, batch_size: int) -> list:
    """[(hidden (B, T, D), args, kwargs)] entering block 0, one entry per batch of calibration samples."""
    layers = models.blocks(model)
    originals = list(layers)
    record: list = []
    home = model.get_input_embeddings().weight.device
    try:
        for i, block in enumerate(originals):
            layers[i] = _StandIn(block, record if i == 0 else None)
        for batch in calibration.split(batch_size):
            model.base_model(input_ids=batch.to(home), use_cache=False)
    finally:
        for i, block in enumerate(originals):
            layers[i] = block
    return [_to(entry, device) for entry in record]


def _feeder(collectors: dict):
    def hook(_module, inputs, _output):  # returns None: the layer's output stays as it is
        for collector in collectors.values():
            collector.add(inputs[0])

    return hook


def run_block(block: nn.Module, states: list) -> list:
    """The block's outputs [(hidden (B, T, D), args, kwargs)] for its inputs in the same form."""
    out = []
    for hidden, args, kwargs in states:
        result = block(hidden, *args, **kwargs)
        out.append((result[0] if isinstance(result, tuple) else result, args, kwargs))
    return out


@torch.no_grad()
def walk(
    model,
    calibration: torch.Tensor | None,
    device: torch.device,
    collect: tuple[str, ...],
    prune_block: PruneBlock,
    batch_size: int = 8,
    dense: tuple[Dense, ...] = (),
    previous: bool = False,
) -> None:
    """Prune every decoder block in order. `collect` names statistics from pruners.stats.COLLECTORS;
    `dense` asks for dense targets and `previous` for the previous step (see the module's doc); with
    neither statistics nor targets, no calibration runs at all."""
    calibrated = bool(collect) or bool(dense)
    states = block_inputs(model, calibration, device, batch_size) if calibrated else []
    dense_states = states if "path" in dense else None
    layers = models.blocks(model)
    homes = [next(block.parameters()).device for block in layers]
    before = None
    for i, block in enumerate(layers):
        block.to(device)
        linears = models.linears(block)
        stats, outputs, path = {}, None, None
        if collect or "block" in dense:
            collectors = {name: {s: COLLECTORS[s](linear) for s in collect} for name, linear in linears.items()}
            hooks = [linear.register_forward_hook(_feeder(collectors[name])) for name, linear in linears.items()]
            try:
                outputs = run_block(block, states)
            finally:
                for hook in hooks:
                    hook.remove()
            stats = {name: {s: c.result(len(calibration)) for s, c in cs.items()} for name, cs in collectors.items()}
        if "path" in dense:
            dense_states = path = run_block(block, dense_states)
        hidden = lambda out: [h for h, _, _ in out] if out is not None else None
        current = Step(i, block, linears, stats, states, hidden(outputs) if "block" in dense else None, hidden(path),
                       last=i + 1 == len(layers), previous=before)
        prune_block(current)
        if before is not None:
            if calibrated:  # the method may have changed the previous block: this block's inputs anew
                current.inputs = states = run_block(before.block, before.inputs)
            before.block.to(homes[i - 1])
        if calibrated and i + 1 < len(layers):
            states = run_block(block, states)  # the pruned block's outputs feed the next block
        if previous:
            before = replace(current, stats={}, block_targets=None, previous=None)
        else:
            block.to(homes[i])
        step(device)
    if before is not None:
        before.block.to(homes[-1])


@torch.no_grad()
def boundaries(model, calibration: torch.Tensor, device: torch.device, batch_size: int = 8) -> Iterator[tuple[int, list]]:
    """The dense model's hidden states at every block boundary, in order: (i, [(B, T, D) per batch]) entering
    block i for i < L, then (L, ...) leaving the last block, before the final norm. One block on the
    device at a time, and only the current boundary in memory."""
    states = block_inputs(model, calibration, device, batch_size)
    yield 0, [hidden for hidden, _, _ in states]
    for i, block in enumerate(models.blocks(model)):
        home = next(block.parameters()).device
        block.to(device)
        states = run_block(block, states)
        block.to(home)
        step(device)
        yield i + 1, [hidden for hidden, _, _ in states]
