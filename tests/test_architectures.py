"""Blocks, linears and the layer walker on tiny random models of every family the papers prune."""
import pytest
import torch

import pruners
from pruners import models
from pruners.spec import Sparsity


def tiny(family: str):
    import transformers as t

    torch.manual_seed(0)
    common = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64)
    if family == "opt":
        return t.OPTForCausalLM(t.OPTConfig(ffn_dim=64, word_embed_proj_dim=32, **common)).eval()
    config = {"llama": t.LlamaConfig, "mistral": t.MistralConfig, "qwen2": t.Qwen2Config}[family]
    model = {"llama": t.LlamaForCausalLM, "mistral": t.MistralForCausalLM, "qwen2": t.Qwen2ForCausalLM}[family]
    return model(config(intermediate_size=64, num_key_value_heads=2, **common)).eval()


LINEARS = {
    "opt": {"self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj", "self_attn.out_proj", "fc1", "fc2"},
    "llama": {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"},
}


@pytest.mark.parametrize("family", ["opt", "llama", "mistral", "qwen2"])
def test_walker_prunes_every_family_without_per_model_code(family):
    model = tiny(family)
    names = {n.split(".", 1)[1] for n in models.target_linears(model)}
    assert names == LINEARS.get(family, LINEARS["llama"])
    calibration = torch.randint(0, 64, (3, 16))
    with torch.no_grad():
        before = model(calibration).logits
    pruners.method("wanda").prune(model, calibration, Sparsity.parse("2:4"), torch.device("cpu"))
    for lin in models.target_linears(model).values():
        assert ((lin.weight.reshape(lin.weight.shape[0], -1, 4) != 0).sum(-1) <= 2).all()
    with torch.no_grad():
        after = model(calibration).logits
    assert torch.isfinite(after).all() and not torch.allclose(before, after)


@pytest.mark.parametrize("family", ["opt", "mistral", "qwen2"])
def test_walker_matches_the_naive_loop_on_every_family(family):
    from test_walker import naive_wanda

    calibration = torch.randint(0, 64, (4, 16))
    spec = Sparsity.parse("unstructured", 0.5)
    walked, naive = tiny(family), tiny(family)
    pruners.method("wanda", batch_size=3).prune(walked, calibration, spec, torch.device("cpu"))
    naive_wanda(naive, calibration, spec)
    for (name, a), b in zip(models.target_linears(walked).items(), models.target_linears(naive).values()):
        assert torch.equal(a.weight, b.weight), name
