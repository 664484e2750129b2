import copy

import pytest
import torch

import pruners
from pruners import models, walker
from pruners.spec import Sparsity

from conftest import summed_inputs, tiny_llama


def naive_wanda(model, calibration, spec):
    """Wanda the slow way: for block i, run the whole (partly pruned) model over every sample, then prune."""
    for block in models.blocks(model):
        sums = summed_inputs(model, calibration, models.linears(block), lambda x: x.pow(2).sum(dim=0))
        for name, linear in models.linears(block).items():
            x = (sums[name] / len(calibration)).sqrt()
            score = linear.weight.abs() * x
            k = int(linear.in_features * spec.ratio)
            drop = torch.sort(score, dim=1, stable=True).indices[:, :k]
            linear.weight.data.scatter_(1, drop, 0.0)


def test_walker_matches_the_naive_whole_model_loop():
    calibration = torch.randint(0, 96, (6, 16))
    spec = Sparsity.parse("unstructured", 0.5)
    walked, naive = tiny_llama(3), tiny_llama(3)
    pruners.method("wanda", batch_size=4).prune(walked, calibration, spec, torch.device("cpu"))
    naive_wanda(naive, calibration, spec)
    for (name, a), b in zip(models.target_linears(walked).items(), models.target_linears(naive).values()):
        assert torch.equal(a.weight == 0, b.weight == 0), name
        assert torch.equal(a.weight, b.weight), name


def test_block_inputs_are_block_zero_inputs_and_blocks_come_back(tiny):
    calibration = torch.randint(0, 96, (5, 12))
    layers = models.blocks(tiny)
    before = list(layers)
    states = walker.block_inputs(tiny, calibration, torch.device("cpu"), batch_size=2)
    assert [s[0].shape[0] for s in states] == [2, 2, 1]
    assert list(layers) == before
    seen = []
    hook = layers[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.no_grad():
        tiny(calibration[:2])
    hook.remove()
    assert torch.equal(seen[0], states[0][0])


def test_target_linears_are_inside_blocks_only(tiny):
    names = list(models.target_linears(tiny))
    assert len(names) == 2 * 7
    assert names[0] == "0.self_attn.q_proj" and "lm_head" not in " ".join(names)


def _block_outputs(model, calibration, batch_size):
    """[(B, T, D) per batch] leaving every block of a whole-model forward, by block index."""
    out, hooks = {}, []
    for i, block in enumerate(models.blocks(model)):
        hooks.append(block.register_forward_hook(lambda _m, _a, o, i=i: out.setdefault(i, []).append(o[0] if isinstance(o, tuple) else o)))
    with torch.no_grad():
        for batch in calibration.split(batch_size):
            model(batch)
    for h in hooks:
        h.remove()
    return out


def _halve(step):
    for linear in step.linears.values():
        linear.weight.data[:, ::2] = 0


@pytest.mark.parametrize("dense", [("path",), ("block", "path")])
def test_dense_path_targets_are_the_dense_models_own_block_outputs(dense):
    calibration = torch.randint(0, 96, (5, 12))
    model = tiny_llama(3, layers=3)
    expected = _block_outputs(copy.deepcopy(model), calibration, batch_size=2)
    seen = {}

    def prune_block(step):
        seen[step.index] = step.path_targets
        assert (step.block_targets is not None) == ("block" in dense)
        if step.index == 2 and "block" in dense:  # on the pruned path's inputs: not the dense path's outputs
            assert not torch.allclose(step.block_targets[0], step.path_targets[0])
        _halve(step)

    walker.walk(model, calibration, torch.device("cpu"), (), prune_block, batch_size=2, dense=dense)
    for i in range(3):
        assert [t.shape for t in seen[i]] == [(2, 12, 32), (2, 12, 32), (1, 12, 32)]
        for got, want in zip(seen[i], expected[i]):
            torch.testing.assert_close(got, want)
    pruned = _block_outputs(model, calibration, batch_size=2)
    assert not torch.allclose(pruned[1][0], expected[1][0])  # the pruned path really differs


@pytest.mark.parametrize("collect", [(), ("X",)])
def test_dense_block_targets_are_the_dense_block_on_the_pruned_inputs(collect):
    calibration = torch.randint(0, 96, (5, 12))
    model = tiny_llama(3, layers=3)
    dense = copy.deepcopy(model)
    seen = {}

    def prune_block(step):
        block = models.blocks(dense)[step.index]
        want = []
        for hidden, args, kwargs in step.inputs:
            out = block(hidden, *args, **kwargs)
            want.append(out[0] if isinstance(out, tuple) else out)
        seen[step.index] = (step.block_targets, want)
        assert step.path_targets is None
        _halve(step)

    with torch.no_grad():
        walker.walk(model, calibration, torch.device("cpu"), collect, prune_block, batch_size=2, dense=("block",))
    for targets, want in seen.values():
        for got, w in zip(targets, want):
            torch.testing.assert_close(got, w)
    path = _block_outputs(dense, calibration, batch_size=2)
    assert not torch.allclose(seen[2][0][0], path[2][0])  # on pruned inputs, not on the dense path


def test_a_step_sees_the_previous_step_and_a_change_to_its_block_reaches_the_next_inputs():
    calibration = torch.randint(0, 96, (5, 12))
    model = tiny_llama(3, layers=3)
    seen = []

    def prune_block(step):
        assert step.last == (step.index == 2)
        if step.index == 0:
            assert step.previous is None
        else:
            assert step.previous.index == step.index - 1 and step.previous.stats == {}
            # what the previous block was given is what the walker ran it on
            entering = _block_outputs(model, calibration, batch_size=2).get(step.index - 2) if step.index > 1 else None
            if entering is not None:
                for (hidden, _, _), want in zip(step.previous.inputs, entering):
                    torch.testing.assert_close(hidden, want)
            for linear in step.previous.linears.values():  # a cross-block method changes the previous block
                linear.weight.data *= 0.5
        seen.append(step.index)
        _halve(step)

    walker.walk(model, calibration, torch.device("cpu"), ("X",), prune_block, batch_size=2, previous=True)
    assert seen == [0, 1, 2]
    # the model as left: block 1's inputs were recomputed after block 0 changed at step 1, so the next
    # step's previous.inputs matched a fresh whole-model forward (checked above at step 2)
