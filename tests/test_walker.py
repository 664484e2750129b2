import torch

import pruners
from pruners import models, walker
from pruners.spec import Sparsity

from conftest import tiny_llama


def naive_wanda(model, calibration, spec):
    """Wanda the slow way: for block i, run the whole (partly pruned) model over every sample, then prune."""
    for block in models.blocks(model):
        sums, hooks = {}, []
        for name, linear in models.linears(block).items():
            sums[name] = torch.zeros(linear.in_features)

            def hook(_m, inputs, _o, name=name):
                sums[name] += inputs[0].pow(2).reshape(-1, inputs[0].shape[-1]).sum(dim=0)

            hooks.append(linear.register_forward_hook(hook))
        with torch.no_grad():
            for sample in calibration:
                model(sample.unsqueeze(0))
        for h in hooks:
            h.remove()
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
