"""The host: one model, restored to its dense state from a snapshot, whatever a method did to it."""
import pytest
import torch

from evolve.host import Host
from pruners import models


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_restore_undoes_weight_changes_and_shape_changes(tiny_dir):
    host = Host(tiny_dir, calib="pydoc", eval="pydoc", nsamples=2, seqlen=32, eval_tokens=256, log=lambda m: None)
    ids = host.windows[:1]
    dense = _logits(host.model, ids)
    models.target_linears(host.model)["0.mlp.up_proj"].weight.data.zero_()
    assert not torch.allclose(_logits(host.model, ids), dense)
    host.restore()
    assert torch.equal(_logits(host.model, ids), dense)
    # a method that removes a block and slims an MLP, as structured pruning does
    del host.model.model.layers[1]
    host.model.config.num_hidden_layers = 1
    mlp = host.model.model.layers[0].mlp
    mlp.down_proj = torch.nn.Linear(8, mlp.down_proj.out_features, bias=False)
    host.restore()
    assert host.model.config.num_hidden_layers == 2 and len(host.model.model.layers) == 2
    assert torch.equal(_logits(host.model, ids), dense)
    assert host.model.lm_head.weight is host.model.model.embed_tokens.weight or not host.model.config.tie_word_embeddings


def test_eval_skip_tokens_leaves_out_a_searchs_own_windows(tiny_dir):
    """A search scored its fitness and validation on the first evaluation tokens: judging its metric after them
    means the windows that follow, not the same ones again. Other texts are read from their start."""
    quiet = dict(calib="pydoc", eval="pydoc", nsamples=2, seqlen=32, log=lambda m: None)
    plain = Host(tiny_dir, eval_tokens=256, **quiet)
    skipping = Host(tiny_dir, eval_tokens=128, eval_skip_tokens=40, **quiet)  # 40 tokens lie in two windows
    assert torch.equal(skipping.windows, plain.windows[2:6])
    assert torch.equal(skipping.windows_of("pydoc"), plain.windows_of("pydoc")[:4])


def test_statistics_are_computed_once_from_the_dense_model(tiny_dir):
    host = Host(tiny_dir, calib="pydoc", eval="pydoc", nsamples=2, seqlen=32, eval_tokens=256, log=lambda m: None)
    X = host.statistic("X")
    models.target_linears(host.model)["0.self_attn.q_proj"].weight.data.zero_()
    assert host.statistic("X") is X  # memoised, not recomputed on the changed model
    host.restore()
    inputs = []
    hook = models.target_linears(host.model)["0.self_attn.q_proj"].register_forward_hook(
        lambda m, i, o: inputs.append(i[0]))
    with torch.no_grad():
        host.model(input_ids=host.calibration)
    hook.remove()
    by_hand = (inputs[0].pow(2).sum(dim=(0, 1)) / 2).sqrt().unsqueeze(0)  # Wanda's norm / sqrt(samples)
    torch.testing.assert_close(X["0.self_attn.q_proj"], by_hand, rtol=1e-4, atol=1e-6)


def test_perplexity_on_other_texts_equals_a_host_evaluating_them(tiny_dir, tmp_path):
    from evolve.scores import score

    legal = tmp_path / "legal.txt"
    legal.write_text(" ".join(f"Clause {i}: the licensee shall keep every notice intact." for i in range(200)))
    quiet = dict(nsamples=2, seqlen=32, eval_tokens=256, log=lambda m: None)
    host = Host(tiny_dir, calib="pydoc", eval="pydoc", **quiet)
    values = score("perplexity", texts=[f"text:{legal}", "pydoc"]).evaluate(host)
    assert set(values) == {"perplexity", "perplexity legal", "perplexity pydoc"}
    other = Host(tiny_dir, calib="pydoc", eval=f"text:{legal}", **quiet)
    assert values["perplexity legal"] == score("perplexity").evaluate(other)["perplexity"]
    assert values["perplexity pydoc"] == values["perplexity"]  # the calibration source gives its evaluation split
    assert values["perplexity legal"] != values["perplexity"]


def test_perplexity_texts_are_checked_before_any_model_loads():
    from evolve.scores import score
    from pruners.errors import InputError

    with pytest.raises(InputError, match="unknown text source 'legal'"):
        score("perplexity", texts=["legal"]).check()
    with pytest.raises(InputError, match="distinct names"):
        score("perplexity", texts=["text:/a/legal.txt", "text:/b/legal"]).check()


def test_G_comes_from_the_grad_calib_text_and_every_other_statistic_from_calibration(tiny_dir, tmp_path):
    """--grad-calib text:PATH: G's gradients are taken over windows of that text, drawn as calibration windows
    are, while X (and the calibration itself) still come from the calibration text."""
    import gradients
    from pruners import data

    legal = tmp_path / "legal.txt"
    legal.write_text(" ".join(f"Clause {i}: the licensee shall keep every notice intact." for i in range(200)))
    quiet = dict(calib="pydoc", eval="pydoc", nsamples=2, seqlen=32, eval_tokens=256, log=lambda m: None)
    plain = Host(tiny_dir, **quiet)
    host = Host(tiny_dir, grad_calib=f"text:{legal}", **quiet)
    windows = data.calibration_samples(host.tokenizer, legal.read_text(), 2, 32, seed=0)
    want = gradients.compute(host.model, windows, torch.device("cpu"))
    for leaf in ("G", "F"):
        got = host.statistic(leaf)
        assert got.keys() == want[leaf].keys() and all(torch.equal(got[k], want[leaf][k]) for k in got)
    G = host.statistic("G")
    assert not torch.equal(G["0.mlp.up_proj"], plain.statistic("G")["0.mlp.up_proj"])
    assert torch.equal(host.calibration, plain.calibration)
    assert torch.equal(host.statistic("X")["0.mlp.up_proj"], plain.statistic("X")["0.mlp.up_proj"])


def test_an_unknown_grad_calib_source_fails_before_the_model_loads(tiny_dir):
    from pruners.errors import InputError

    loads = []
    with pytest.raises(InputError, match="unknown text source 'legal'"):
        Host(tiny_dir, grad_calib="legal", log=loads.append)
    assert not any("loading" in line for line in loads)
