"""Layer drop against a naive reference built on the model's own output_hidden_states."""
import pytest
import torch

import pruners
from evolve.cli import main
from pruners import models
from pruners.errors import InputError
from pruners.layerdrop import distance
from pruners.spec import Sparsity

from conftest import tiny_llama

CPU = torch.device("cpu")


def naive_boundaries(model, calibration) -> list[torch.Tensor]:
    """[(n, T, D)] entering each block, then leaving the last one: the model's hidden_states, whose last
    entry has the final norm applied, so the last block's output comes from a hook."""
    layers = models.blocks(model)
    last = []
    hook = layers[-1].register_forward_hook(lambda _m, _i, out: last.append(out[0] if isinstance(out, tuple) else out))
    with torch.no_grad():
        hidden = model(calibration, output_hidden_states=True, use_cache=False).hidden_states
    hook.remove()
    return [*hidden[: len(layers)], last[0]]


def naive_scores(model, calibration, criterion, tokens, span=1) -> list[float]:
    """Mean distance between boundary l and boundary l + span, token by token in plain Python."""
    states = naive_boundaries(model, calibration)
    n, T, _ = states[0].shape
    positions = [T - 1] if tokens == "last" else range(T)
    out = []
    for l in range(len(states) - span):
        values = []
        for s in range(n):
            for t in positions:
                a, b = states[l][s, t], states[l + span][s, t]
                cos = torch.clamp((a @ b) / (a.norm() * b.norm()), -1, 1).item()
                values.append(torch.arccos(torch.tensor(cos)).item() / torch.pi if criterion == "angular" else 1 - cos)
        out.append(sum(values) / len(values))
    return out


def identity_at(model, index: int):
    """Block `index` made an identity: its attention and MLP add zero to the residual stream."""
    block = models.blocks(model)[index]
    block.self_attn.o_proj.weight.data.zero_()
    block.mlp.down_proj.weight.data.zero_()
    return model


@pytest.mark.parametrize("criterion", ["angular", "cosine"])
@pytest.mark.parametrize("tokens", ["last", "all"])
def test_block_distances_equal_the_naive_ones(criterion, tokens):
    model, calibration = tiny_llama(1, layers=4), torch.randint(0, 96, (5, 12))
    method = pruners.method("layer-drop", criterion=criterion, tokens=tokens, batch_size=2)
    for span in (1, 3):
        got = method.distances(model, calibration, CPU, span).tolist()
        assert got == pytest.approx(naive_scores(model, calibration, criterion, tokens, span), abs=1e-5)


@pytest.mark.parametrize("criterion", ["angular", "cosine"])
def test_an_identity_block_goes_first_and_skipped_blocks_stay(criterion):
    calibration = torch.randint(0, 96, (4, 12))
    model = identity_at(tiny_llama(2, layers=5), 2)
    method = pruners.method("layer-drop", criterion=criterion)
    scores = method.distances(model, calibration, CPU, 1)
    others = [v for i, v in enumerate(scores.tolist()) if i != 2]
    assert scores[2].item() < 1e-3 < min(others)  # zero, up to arccos's float32 rounding near 1
    assert method.choose(model, calibration, CPU, 1) == [2]
    skipping = pruners.method("layer-drop", criterion=criterion, skip=(2, -1))
    chosen = skipping.choose(model, calibration, CPU, 3)
    assert len(chosen) == 3 and 2 not in chosen and 4 not in chosen


def test_contiguous_picks_the_window_a_brute_force_search_picks():
    model, calibration = tiny_llama(3, layers=6), torch.randint(0, 96, (4, 12))
    for k in (2, 3):
        brute = naive_scores(model, calibration, "angular", "last", span=k)
        start = min(range(len(brute)), key=brute.__getitem__)
        assert pruners.method("layer-drop", contiguous=True).choose(model, calibration, CPU, k) == list(range(start, start + k))
    window = pruners.method("layer-drop", contiguous=True, skip=(start,)).choose(model, calibration, CPU, 3)
    assert start not in window and window == sorted(window) and window[-1] - window[0] == 2


def test_a_model_without_blocks_saves_reloads_and_generates_with_a_cache(tmp_path):
    from transformers import AutoModelForCausalLM

    model, calibration = tiny_llama(4, layers=5), torch.randint(0, 96, (4, 12))
    model.config.use_cache = True
    pruners.method("layer-drop").prune(model, calibration, Sparsity.parse("blocks", blocks=2), CPU)
    assert model.config.num_hidden_layers == 3 and len(models.blocks(model)) == 3
    assert [b.self_attn.layer_idx for b in models.blocks(model)] == [0, 1, 2]
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    prompt = torch.randint(0, 96, (1, 6))
    with torch.no_grad():
        assert torch.equal(reloaded(prompt).logits, model(prompt).logits)
        cached = reloaded.generate(prompt, max_new_tokens=8, do_sample=False, use_cache=True)
        plain = reloaded.generate(prompt, max_new_tokens=8, do_sample=False, use_cache=False)
    assert torch.equal(cached, plain)  # a wrong layer_idx would make the cache mix blocks


def test_bad_layer_drop_input():
    model, calibration = tiny_llama(0, layers=4), torch.randint(0, 96, (2, 8))
    cases = [({"skip": (4,)}, 1, "--skip index 4 is out of range for a model of 4 blocks"),
             ({"skip": (-5,)}, 1, "--skip index -5 is out of range"),
             ({}, 4, "cannot remove 4 of 4 blocks: this model has 4, and one must stay"),
             ({"skip": (0, -1)}, 3, "cannot remove 3 of 4 blocks with 2 kept"),
             ({"skip": (1,), "contiguous": True}, 3, "no run of 3 consecutive blocks")]
    for options, k, message in cases:
        with pytest.raises(InputError, match=message):
            pruners.method("layer-drop", **options).choose(model, calibration, CPU, k)
    assert len(models.blocks(model)) == 4


def test_layer_drop_cli_refuses_bad_input_in_one_line(tiny_dir, tmp_path, capsys):
    save = tmp_path / "out"
    common = ["baseline", "--model", tiny_dir, "--nsamples", "2", "--seqlen", "16", "--eval-tokens", "64", "--save", str(save)]
    assert main([*common, "--method", "layer-drop", "--blocks", "2", "--skip=-3"]) == 2
    assert "--skip index -3 is out of range for a model of 2 blocks" in capsys.readouterr().err
    assert main([*common, "--method", "layer-drop", "--pattern", "2:4"]) == 2
    assert "method layer-drop prunes blocks; not N:M" in capsys.readouterr().err
    assert main([*common, "--method", "layer-drop"]) == 2
    assert "pattern blocks and --blocks N" in capsys.readouterr().err
    assert main([*common, "--method", "wanda", "--blocks", "1"]) == 2
    assert "method wanda prunes unstructured, N:M; not blocks" in capsys.readouterr().err
    assert not save.exists()
    assert main([*common, "--method", "layer-drop", "--blocks", "1", "--tokens", "all"]) == 0
    assert "| layer-drop angular/all | 1 block | 0.0000 | 0.5000 |" in capsys.readouterr().out


def test_a_method_name_carries_its_options():
    method = pruners.method("layer-drop(criterion=cosine, skip=[0, -1], contiguous=true)", tokens="all")
    assert (method.criterion, method.skip, method.contiguous, method.tokens) == ("cosine", (0, -1), True, "all")
    assert method.label() == "layer-drop contiguous cosine/all"
    assert pruners.method("surgeon(shots=2)", shots=5).shots == 2  # written at the name wins over the config's
    with pytest.raises(InputError, match="cannot read method options"):
        pruners.method("wanda(batch_size=[)")
    with pytest.raises(InputError, match="option tokens"):
        pruners.method("layer-drop(tokens=first)")
