import pytest
import torch


def tiny_llama(seed: int = 0, layers: int = 2):
    """A random LLaMA small enough to run naive reference implementations against."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        use_cache=False,
    )
    return LlamaForCausalLM(config).eval()


def summed_inputs(model, calibration: torch.Tensor, linears: dict, f) -> dict[str, torch.Tensor]:
    """The slow way to a statistic: each calibration sample run through the whole model, and for each of
    `linears` (name -> module) the sum of f(x) over samples, x its (tokens, in) inputs."""
    sums, hooks = {}, []
    for name, linear in linears.items():

        def hook(_m, inputs, _o, name=name):
            x = inputs[0].reshape(-1, inputs[0].shape[-1])
            sums[name] = sums[name] + f(x) if name in sums else f(x)

        hooks.append(linear.register_forward_hook(hook))
    with torch.no_grad():
        for sample in calibration:
            model(sample.unsqueeze(0))
    for h in hooks:
        h.remove()
    return sums


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Tests write gradients of throwaway models: they go to a cache of the session's own, not the user's.
    Converted models stay shared, so the embedded GGUF is dequantized once per machine, not per run."""
    from pruners import models

    shared = models.cache_root() / "models"
    shared.mkdir(parents=True, exist_ok=True)
    root = tmp_path_factory.mktemp("cache")
    (root / "models").symlink_to(shared)
    patch = pytest.MonkeyPatch()
    patch.setenv("EVOLVE_CACHE", str(root))  # subprocesses inherit it
    yield root
    patch.undo()


@pytest.fixture
def tiny():
    return tiny_llama()


@pytest.fixture(scope="session")
def smollm():
    """The embedded model and tokenizer, loaded once for the whole session."""
    from pruners import models

    return models.load(models.EMBEDDED)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A tiny random LLaMA saved as a local model folder, with the embedded model's tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from pruners import models

    _, tokenizer = models.load(models.EMBEDDED)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, use_cache=False,
    )
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
