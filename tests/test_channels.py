"""Retrain-free channel pruning: mask gradients against weight gradients, a dead channel first, and a
slimmed model that computes what the masked one computes."""
import copy

import pytest
import torch

import pruners
from pruners import models
from pruners.channels import fisher, lowest_globally, rearranged, tune_block
from pruners.spec import Sparsity

from conftest import tiny_llama

CPU = torch.device("cpu")


def through_weights(model, calibration) -> list[torch.Tensor]:
    """The same Fisher another way: scaling input j of a down projection by m_j scales its column j, so
    dL/dm_j = sum_i W_ij dL/dW_ij, from ordinary weight gradients, one sample at a time."""
    downs = [models.mlp(b)[1] for b in models.blocks(model)]
    sums = [torch.zeros(d.in_features, dtype=torch.float64) for d in downs]
    for sample in calibration:
        model.zero_grad()
        model(input_ids=sample.unsqueeze(0), labels=sample.unsqueeze(0)).loss.backward()
        for total, d in zip(sums, downs):
            total += (d.weight * d.weight.grad).sum(dim=0).double().pow(2)
    model.zero_grad()
    return [s.float() for s in sums]


def test_mask_fisher_equals_the_one_from_weight_gradients():
    model, calibration = tiny_llama(5, layers=2), torch.randint(0, 96, (3, 12))
    got = [fisher(g) for g in pruners.method("channels").mask_gradients(model, calibration, CPU)]
    for a, b in zip(got, through_weights(model, calibration)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-12)
    assert all(p.requires_grad for p in model.parameters())  # put back as found


def test_a_channel_nothing_reads_scores_zero_and_goes_first():
    model, calibration = tiny_llama(6, layers=2), torch.randint(0, 96, (3, 12))
    models.mlp(models.blocks(model)[1])[1].weight.data[:, 17] = 0  # channel 17 of block 1 reaches nothing
    scores = [fisher(g) for g in pruners.method("channels").mask_gradients(model, calibration, CPU)]
    assert scores[1][17].item() == 0 and (torch.cat(scores) > 0).sum() == 2 * 64 - 1
    kept = lowest_globally(scores, 1 / 128 + 1e-9)  # one channel of 128
    assert [len(k) for k in kept] == [64, 63] and 17 not in kept[1].tolist()


def test_one_threshold_over_all_layers_and_a_channel_kept_per_layer():
    scores = [torch.tensor([5.0, 1.0, 7.0]), torch.tensor([0.5, 0.2, 0.1]), torch.tensor([9.0, 2.0])]
    kept = lowest_globally(scores, 0.5)  # four of eight: 0.1, 0.2, 0.5, 1.0
    assert [k.tolist() for k in kept] == [[0, 2], [0], [0, 1]]  # layer 1 keeps its best one
    assert [k.tolist() for k in lowest_globally(scores, 0.25)] == [[0, 1, 2], [0], [0, 1]]


def cost(grads, pruned):
    """Kwon's estimate of the loss a removed set costs: ||sum of its channels' gradient vectors||^2."""
    return grads[:, pruned].sum(dim=1).double().pow(2).sum().item()


def test_rearrangement_swaps_in_a_channel_that_cancels_the_others():
    # gradients (samples, channels): c0 and c1 push the same way, c2 pushes back a little harder
    grads = torch.tensor([[1.0, 1.0, -1.1, 5.0], [0.0, 0.0, 0.0, 3.0]])
    diagonal = lowest_globally([fisher(grads)], 0.5)[0]
    assert diagonal.tolist() == [2, 3] and cost(grads, [0, 1]) == pytest.approx(4.0)
    kept = rearranged(grads, diagonal)
    assert kept.tolist() == [0, 3] and cost(grads, [1, 2]) == pytest.approx(0.01)


def test_rearrangement_keeps_the_count_and_never_costs_more():
    torch.manual_seed(0)
    for _ in range(20):
        grads = torch.randn(6, 40) + torch.randn(1, 40)  # a shared component: channels correlate
        kept = lowest_globally([fisher(grads)], 0.3)[0]
        new = rearranged(grads, kept)
        gone = lambda k: sorted(set(range(40)) - set(k.tolist()))
        assert len(new) == len(kept) and new.unique().numel() == len(new)
        assert cost(grads, gone(new)) <= cost(grads, gone(kept)) + 1e-9
    assert torch.equal(rearranged(grads, torch.arange(40)), torch.arange(40))


def test_mask_tuning_solves_the_block_least_squares_the_direct_way():
    """Block 0 sees the same input on both paths: its scales must be the least-squares solution built
    from the explicit (tokens x hidden, kept) design matrix, one column per kept channel."""
    from pruners import walker

    model, calibration = tiny_llama(8, layers=2), torch.randint(0, 96, (3, 12))
    block, keep = models.blocks(model)[0], torch.arange(0, 64, 3)
    down = models.mlp(block)[1]
    dense_w = down.weight.data.clone()
    states = walker.block_inputs(model, calibration, CPU, batch_size=3)
    with torch.no_grad():
        target = walker.run_block(block, states)[0][0]  # (3, 12, 32)
        gone = torch.ones(64, dtype=torch.bool)
        gone[keep] = False
        down.weight.data[:, gone] = 0
        seen = []
        hook = down.register_forward_hook(lambda _m, a, o: seen.append((a[0], o)))
        output = walker.run_block(block, states)[0][0]
        hook.remove()
        h, mlp_out = seen[0]
        b = (target - output + mlp_out).reshape(-1)  # (N * D,)
        design = torch.stack([(h[..., j].reshape(-1, 1) * dense_w[:, j]).reshape(-1) for j in keep.tolist()], dim=1)
        want = torch.linalg.lstsq(design.double(), b.double().unsqueeze(1)).solution.squeeze(1)
        down.weight.data.copy_(dense_w)
        tune_block(walker.Step(0, block, models.linears(block), {}, states, None, [target]), keep)
    got = down.weight.data[:, keep] / dense_w[:, keep]
    assert torch.allclose(got, want.float().expand_as(got), rtol=1e-3, atol=1e-4)
    assert (down.weight.data[:, gone] == 0).all() and not torch.allclose(want, torch.ones_like(want), atol=0.05)


def last_block_output(model, ids) -> torch.Tensor:
    """(B, T, D) leaving the last block, before the final norm."""
    seen = []
    hook = models.blocks(model)[-1].register_forward_hook(lambda _m, _a, o: seen.append(o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        model(ids)
    hook.remove()
    return seen[0]


def test_tuned_channels_fit_the_dense_output_better(tiny_dir):
    from transformers import AutoModelForCausalLM

    dense = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    calibration = torch.randint(0, 96, (4, 16))
    ids = calibration[:2]
    last = lambda m: last_block_output(m, ids)
    errors = {}
    for tune in (False, True):
        model = copy.deepcopy(dense)
        pruners.method("channels", tune=tune).prune(model, calibration, Sparsity.parse("channels", 0.5), CPU)
        errors[tune] = (last(model) - last(dense)).pow(2).sum().item()
    assert errors[True] < errors[False]  # 4% less here: the tiny random model's MLPs add little


def test_the_slim_model_computes_what_the_masked_model_computes_and_reloads(tmp_path):
    from transformers import AutoModelForCausalLM

    model, calibration = tiny_llama(7, layers=3), torch.randint(0, 96, (3, 12))
    method, spec = pruners.method("channels"), Sparsity.parse("channels", 0.4)
    kept = method.choose(model, calibration, spec, CPU)
    masked = copy.deepcopy(model)
    for block, k in zip(models.blocks(masked), kept):
        gone = torch.ones(64, dtype=torch.bool)
        gone[k] = False
        models.mlp(block)[1].weight.data[:, gone] = 0
    before = sum(p.numel() for p in model.parameters())
    method.prune(model, calibration, spec, CPU)
    widths = [models.mlp(b)[1].in_features for b in models.blocks(model)]
    assert widths == [len(k) for k in kept] and len(set(widths)) > 1  # each MLP as wide as what it keeps
    assert sum(p.numel() for p in model.parameters()) == before - sum(64 - w for w in widths) * 3 * 32  # gate, up, down
    ids = torch.randint(0, 96, (2, 10))
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, masked(ids).logits, atol=1e-5)
        slim = model(ids).logits
    models.pad_mlps(model)  # what saving does: one width, the widest, for the config
    assert model.config.intermediate_size == max(widths) < 64
    assert [models.mlp(b)[1].in_features for b in models.blocks(model)] == [max(widths)] * 3
    with torch.no_grad():  # zero channels add nothing, though a wider matmul may sum in another order
        padded = model(ids).logits
        assert torch.allclose(padded, slim, rtol=0, atol=1e-6)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)


def test_an_opt_mlp_slims_with_its_biases():
    import transformers as t

    common = dict(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64)
    torch.manual_seed(0)
    model = t.OPTForCausalLM(t.OPTConfig(ffn_dim=64, word_embed_proj_dim=32, **common)).eval()
    for block in models.blocks(model):
        block.fc1.bias.data.normal_()
    kept = [torch.arange(0, 64, 2), torch.arange(0, 40)]
    masked = copy.deepcopy(model)
    for block, k in zip(models.blocks(masked), kept):
        gone = torch.ones(64, dtype=torch.bool)
        gone[k] = False
        block.fc2.weight.data[:, gone] = 0
    models.slim_mlps(model, kept)
    models.pad_mlps(model)
    assert model.config.ffn_dim == 40 and models.blocks(model)[0].fc1.bias[32:].abs().sum() == 0
    ids = torch.randint(0, 96, (2, 10))
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, masked(ids).logits, atol=1e-5)


def test_channels_cli_row_and_bad_input(tiny_dir, tmp_path, capsys):
    from evolve.cli import main

    save = tmp_path / "out"
    common = ["baseline", "--model", tiny_dir, "--nsamples", "2", "--seqlen", "16", "--eval-tokens", "64",
              "--method", "channels", "--save", str(save)]
    assert main([*common, "--sparsity", "1.0"]) == 2
    assert "strictly between 0 and 1" in capsys.readouterr().err
    assert main([*common, "--pattern", "2:4"]) == 2
    assert "method channels prunes channels; not N:M" in capsys.readouterr().err
    assert not save.exists()
    assert main([*common, "--sparsity", "0.25", "--tune", "--no-rearrange"]) == 0
    from transformers import AutoModelForCausalLM

    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| channels")][0].split(" | ")
    weights = lambda m: sum(lin.weight.numel() for lin in models.target_linears(m).values())
    saved, dense = AutoModelForCausalLM.from_pretrained(save), AutoModelForCausalLM.from_pretrained(tiny_dir)
    # removed, measured on the slim model in memory: a quarter of the MLP weights, which are 2/3 of the targets
    assert row[0] == "| channels diagonal tuned" and row[1] == "channels 25%" and float(row[3]) == pytest.approx(0.25 * 2 / 3, abs=1e-4)
    assert saved.config.intermediate_size <= 64 and weights(saved) >= weights(dense) * (1 - float(row[3])) - 1


def test_only_the_first_samples_score():
    model, calibration = tiny_llama(9, layers=2), torch.randint(0, 96, (6, 12))
    spec, method = Sparsity.parse("channels", 0.4), pruners.method("channels", samples=2)
    first_two = method.choose(model, calibration[:2], spec, CPU)
    every = method.choose(model, calibration, spec, CPU)
    assert any(not torch.equal(a, b) for a, b in zip(first_two, every))  # so which samples score shows
    dense = [models.mlp(b)[1].weight.clone() for b in models.blocks(model)]  # (D, intermediate) each
    method.prune(model, calibration, spec, CPU)
    for block, W, kept in zip(models.blocks(model), dense, first_two):
        assert torch.equal(models.mlp(block)[1].weight, W[:, kept])
