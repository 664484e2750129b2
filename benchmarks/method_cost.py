"""Seconds and peak memory of SparseGPT and the LLM Surgeon (one shot, and its default shots) against
Wanda's, each pruning the embedded model at 50% unstructured in a fresh process, in one run."""
import argparse

from fresh import measure

METHODS = {
    "wanda": "pruners.method('wanda')",
    "sparsegpt": "pruners.method('sparsegpt')",
    "surgeon-1": "pruners.method('surgeon', shots=1)",
    "surgeon": "pruners.method('surgeon')",  # its default: 5 shots
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nsamples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--only", type=lambda t: t.split(","), default=list(METHODS), help="comma list of rows to run")
    args = parser.parse_args()
    base = None
    for name, make in METHODS.items():
        if name not in args.only:
            continue
        work = f"{make}.prune(model, calib, Sparsity.parse('unstructured', 0.5), torch.device('cpu'))"
        seconds, loaded, peak = measure(work, args.nsamples, args.seqlen)
        base = base or (seconds, peak - loaded)
        print(f"{name:28s} {seconds:7.1f} s ({seconds / base[0]:5.2f}x wanda)   pruning adds {peak - loaded:6.0f} MiB "
              f"to the loaded model's {loaded:.0f} MiB ({(peak - loaded) / max(base[1], 1):5.2f}x wanda)", flush=True)


if __name__ == "__main__":
    main()
