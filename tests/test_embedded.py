"""On the real embedded model, with small token counts. The default run loads it once (a smoke test); the
runs that prune and evaluate it take minutes on 2 cores and are marked slow."""
import json

import pytest
import torch

import pruners
from evolve.workbench import Workbench
from evolve.config import Config
from pruners import models
from pruners.spec import Sparsity


@pytest.fixture(scope="module")
def bench():
    config = Config.model_validate({"data": {"nsamples": 16, "seqlen": 256, "eval_tokens": 4096}})
    return Workbench(config)


@pytest.fixture(scope="module")
def rows(bench):
    half = Sparsity.parse("unstructured", 0.5)
    return {name: bench.run(pruners.method(name), half) for name in ("dense", "magnitude", "wanda")}


@pytest.mark.slow  # two minutes: three pruned models
def test_wanda_sits_between_dense_and_magnitude(rows):
    ppl = {name: row.scores["perplexity"] for name, row in rows.items()}
    assert ppl["dense"] < ppl["wanda"] < ppl["magnitude"]
    assert rows["wanda"].sparsity == pytest.approx(0.5, abs=1e-3)
    assert rows["magnitude"].sparsity == pytest.approx(0.5, abs=1e-6)  # exactly, despite the Q4 ties
    assert rows["dense"].sparsity < 0.01


@pytest.mark.e2e
def test_the_embedded_model_is_a_llama_on_a_16_level_grid(bench):
    assert type(bench.host.model).__name__ == "LlamaForCausalLM"
    assert len(models.target_linears(bench.host.model)) == 30 * 7
    block = bench.host.model.model.layers[0].self_attn.q_proj.weight[0, :32]  # one Q4_1 block of 32
    assert len(torch.unique(block)) <= 16


@pytest.mark.slow  # a minute: it writes and reloads 540 MB; tests/test_cli.py saves the tiny model
def test_save_writes_a_model_that_reloads_pruned(bench, tmp_path):
    from transformers import AutoModelForCausalLM

    row = bench.run(pruners.method("wanda"), Sparsity.parse("2:4"))
    bench.save(str(tmp_path), row)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["result"]["point"] == "2:4"
    assert report["layer_sparsity"]["0.mlp.up_proj"] == pytest.approx(0.5, abs=1e-4)  # plus dense zeros
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    saved = reloaded.model.layers[5].mlp.down_proj.weight
    assert torch.equal(saved, bench.host.model.model.layers[5].mlp.down_proj.weight)
    assert ((saved.view(-1, 4) != 0).sum(1) <= 2).all()


@pytest.mark.slow  # a minute: lm-eval on two models
def test_dense_predicts_the_last_word_better_than_magnitude_at_half():
    config = Config.model_validate({"data": {"nsamples": 4, "seqlen": 256, "eval_tokens": 256},
                                    "evaluate": {"tasks": ["last-word"], "limit": 40}})
    bench = Workbench(config)
    half = Sparsity.parse("unstructured", 0.5)
    dense, magnitude = (bench.run(pruners.method(m), half).scores for m in ("dense", "magnitude"))
    assert dense["last-word acc"] > magnitude["last-word acc"] + 0.1
    assert dense["last-word ppl"] < magnitude["last-word ppl"]
