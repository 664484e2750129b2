"""Symbolic baselines prune exactly as the hand-written methods do, on the real embedded model."""
import pytest
import torch

import pruners
from pruners import models
from pruners.spec import Sparsity


@pytest.fixture(scope="module")
def model_and_calibration(smollm):
    model, tokenizer = smollm
    calibration = torch.randint(0, tokenizer.vocab_size, (4, 64), generator=torch.Generator().manual_seed(0))
    dense = {n: lin.weight.detach().clone() for n, lin in models.target_linears(model).items()}
    return model, calibration, dense


def pruned_weights(model, dense, method, calibration, spec):
    for name, lin in models.target_linears(model).items():
        lin.weight.data.copy_(dense[name])
    pruners.method(method).prune(model, calibration, spec, torch.device("cpu"))
    return {n: lin.weight.detach().clone() for n, lin in models.target_linears(model).items()}


@pytest.mark.parametrize(
    "hand, symbolic, spec",
    [
        ("wanda", "metric:wanda", Sparsity.parse("unstructured", 0.5)),
        ("wanda", "metric:wanda", Sparsity.parse("2:4")),
        ("magnitude", "metric:magnitude", Sparsity.parse("unstructured", 0.5, "layer")),
        ("magnitude", "metric:magnitude", Sparsity.parse("4:8")),
    ],
)
def test_symbolic_equals_hand_written(model_and_calibration, hand, symbolic, spec):
    model, calibration, dense = model_and_calibration
    a = pruned_weights(model, dense, hand, calibration, spec)
    b = pruned_weights(model, dense, symbolic, calibration, spec)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert sum((w == 0).sum().item() for w in a.values()) > 0.49 * sum(w.numel() for w in a.values())


def test_a_metric_that_turns_nan_on_a_layer_names_the_layer(tiny):
    from pruners.errors import InputError

    G = {name: torch.rand_like(lin.weight) for name, lin in models.target_linears(tiny).items()}
    G["1.mlp.up_proj"][3, 5] = float("nan")
    with pytest.raises(InputError, match=r"yields NaN or Inf on layer 1.mlp.up_proj"):
        pruners.method("metric:taylor").prune(tiny, None, Sparsity.parse("unstructured", 0.5), torch.device("cpu"), G)


def test_a_metric_using_G_without_G_is_refused(tiny):
    from pruners.errors import InputError

    with pytest.raises(InputError, match="uses G"):
        pruners.method("metric:pruner-zero").prune(tiny, None, Sparsity.parse("2:4"), torch.device("cpu"))
