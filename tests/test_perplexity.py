import math
from types import SimpleNamespace

import pytest
import torch

from evolve.perplexity import perplexity, windows
from pruners.errors import InputError


class Bigram(torch.nn.Module):
    """Predicts the next token from the current one with a fixed probability table."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table

    def forward(self, input_ids, use_cache=False):
        return SimpleNamespace(logits=self.table[input_ids].log())  # (B, T, V)


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    model = Bigram(torch.full((7, 7), 1 / 7))
    tokens = torch.randint(0, 7, (1, 50))
    assert perplexity(model, windows(tokens, 10), torch.device("cpu")) == pytest.approx(7.0, rel=1e-6)


def test_perplexity_against_a_hand_computed_value():
    table = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.6, 0.2, 0.2]])
    stream = [0, 1, 1, 2, 0, 0, 2, 1, 0, 2, 2]  # 11 tokens: two windows of 5, the last token unused
    # Predicted pairs stay inside a window: (0,1) (1,1) (1,2) (2,0) | (0,2) (2,1) (1,0) (0,2)
    probs = [0.25, 0.8, 0.1, 0.6, 0.25, 0.2, 0.1, 0.25]
    expected = math.exp(-sum(math.log(p) for p in probs) / len(probs))
    tokens = torch.tensor([stream])
    for batch_size in (1, 2):
        got = perplexity(Bigram(table), windows(tokens, 5), torch.device("cpu"), batch_size)
        assert got == pytest.approx(expected, rel=1e-6)


def test_window_loss_is_accurate_over_a_large_vocabulary():
    """A real vocabulary (49152, the embedded model's) and window (512): the float32 loss within 1e-6 of
    float64 (it is 3e-7 off). Cross entropy over (B, V, T) logits was 4e-6 off here on CPU, and 6e-5 on
    the embedded model's own logits: enough to move the third decimal of a perplexity away from the
    papers' code, which takes rows of (N, V) logits."""
    from evolve.perplexity import window_nll

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 512, 49152, generator=generator) * 4  # (B, T, V)
    tokens = torch.randint(0, 49152, (1, 512), generator=generator)
    model = lambda input_ids, use_cache=False: SimpleNamespace(logits=logits)  # noqa: E731
    exact = torch.nn.functional.cross_entropy(logits[0, :-1].double(), tokens[0, 1:], reduction="sum")
    assert window_nll(model, tokens).item() == pytest.approx(exact.item(), rel=1e-6)


def test_eval_tokens_keeps_the_first_windows():
    tokens = torch.arange(100).unsqueeze(0)
    assert windows(tokens, 10).shape == (10, 10)
    assert windows(tokens, 10, 35).tolist() == torch.arange(30).view(3, 10).tolist()
    # skipping 25 tokens leaves out the three windows that hold them; the limit counts what follows
    assert windows(tokens, 10, 35, skip_tokens=25).tolist() == torch.arange(30, 60).view(3, 10).tolist()
    assert windows(tokens, 10, skip_tokens=20).tolist() == torch.arange(20, 100).view(8, 10).tolist()
    with pytest.raises(InputError, match="at least one window"):
        windows(tokens, 10, 5)
