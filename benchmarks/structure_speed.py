"""What a structured method buys a user: tokens per second of a 512-token forward and of greedy generation
with a KV cache, and the size on disk, for the dense embedded model against the same model with 4 of its
30 blocks removed by layer-drop and with 20% of its MLP channels removed by channels, side by side in one
run (runs interleaved, median of --repeats). The channels model is measured slim, as it is in memory;
on disk its MLPs are padded to the widest one (see pruners.models.pad_mlps)."""
import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

import pruners
from evolve.host import Host
from pruners.models import pad_mlps
from pruners.spec import Sparsity


def forward_tokens_per_s(model, ids: torch.Tensor) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        model(ids, use_cache=False)
    return ids.numel() / (time.perf_counter() - start)


def generate_tokens_per_s(model, prompt: torch.Tensor, new: int) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False, use_cache=True)
    return (out.shape[1] - prompt.shape[1]) / (time.perf_counter() - start)


def saved_mb(model) -> float:
    model = copy.deepcopy(model)
    pad_mlps(model)
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder, safe_serialization=True)
        return sum(f.stat().st_size for f in Path(folder).iterdir()) / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    host = Host("smollm2-135m", "float32", "cpu", nsamples=32, seqlen=512, log=lambda _: None)
    dense = host.model
    dense.config.use_cache = True
    dropped, slim = copy.deepcopy(dense), copy.deepcopy(dense)
    pruners.method("layer-drop").prune(dropped, host.calibration, Sparsity.parse("blocks", blocks=4), torch.device("cpu"))
    pruners.method("channels").prune(slim, host.calibration, Sparsity.parse("channels", 0.2), torch.device("cpu"))
    models = {"dense": dense, "layer-drop 4 blocks": dropped, "channels 20%": slim}
    ids, prompt = host.windows[:1, :512], host.windows[:1, :32]
    runs = {name: {"forward": [], "generate": []} for name in models}
    for _ in range(args.repeats):  # interleaved: a slow moment of the machine hits both
        for name, model in models.items():
            runs[name]["forward"].append(forward_tokens_per_s(model, ids))
            runs[name]["generate"].append(generate_tokens_per_s(model, prompt, args.new_tokens))
    print(f"torch threads {torch.get_num_threads()}, median of {args.repeats}")
    print("| model | blocks | params M | on disk MB | forward 512 tok/s | generate tok/s | forward x | generate x |")
    print("|---|---|---|---|---|---|---|---|")
    base = {k: statistics.median(v) for k, v in runs["dense"].items()}
    for name, model in models.items():
        f, g = (statistics.median(runs[name][k]) for k in ("forward", "generate"))
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"| {name} | {model.config.num_hidden_layers} | {params:.1f} | {saved_mb(model):.0f} | {f:.0f} | {g:.1f} | "
              f"{f / base['forward']:.2f} | {g / base['generate']:.2f} |")


if __name__ == "__main__":
    main()
