"""Seconds and peak memory of each method against Wanda's and SparseGPT's, each pruning the embedded model at
50% unstructured in a fresh process, in one run: SparseGPT, the LLM Surgeon (one shot, and its default
shots), and every reconstruction after Wanda's masks (lr, br, br+gp, br+gp+cr)."""
import argparse

from fresh import measure

METHODS = {
    "wanda": "pruners.method('wanda')",
    "sparsegpt": "pruners.method('sparsegpt')",
    "surgeon-1": "pruners.method('surgeon', shots=1)",
    "surgeon": "pruners.method('surgeon')",  # its default: 5 shots
    **{f"wanda +{r}": f"pruners.method('wanda', reconstruct='{r}')" for r in ("lr", "br", "br+gp", "br+gp+cr")},
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nsamples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--only", type=lambda t: t.split(","), default=list(METHODS),
                        help="comma list of rows to run, e.g. 'wanda +br,surgeon' (wanda and sparsegpt always run: the ratios' bases)")
    args = parser.parse_args()
    unknown = [name for name in args.only if name not in METHODS]
    if unknown:  # a misspelt row would otherwise be skipped in silence
        parser.error(f"unknown row(s) {', '.join(map(repr, unknown))}; the rows are {', '.join(METHODS)}")
    bases = {}
    print(f"{args.nsamples} x {args.seqlen} calibration tokens; seconds, and the memory pruning adds to the loaded model's")
    for name, make in METHODS.items():
        if name not in args.only + ["wanda", "sparsegpt"]:
            continue
        work = f"{make}.prune(model, calib, Sparsity.parse('unstructured', 0.5), torch.device('cpu'))"
        seconds, loaded, peak = measure(work, args.nsamples, args.seqlen)
        added = peak - loaded
        if name in ("wanda", "sparsegpt"):
            bases[name] = (seconds, max(added, 1))
        ratios = "  ".join(f"{seconds / s:6.2f}x {base} time, {added / m:5.2f}x memory" for base, (s, m) in bases.items() if base != name)
        print(f"{name:20s} {seconds:7.1f} s {added:6.0f} MiB over {loaded:.0f} MiB   {ratios}", flush=True)


if __name__ == "__main__":
    main()
