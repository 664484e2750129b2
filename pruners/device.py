"""One place that knows which accelerators exist. Nothing else in the code mentions Habana."""
import contextlib
import importlib.util
import os

import torch

from pruners.errors import InputError

DEVICES = ("auto", "cpu", "cuda", "hpu", "mps")


def _hpu_available() -> bool:
    # habana-torch-plugin ships with Intel's Gaudi images only; it is never a dependency.
    if importlib.util.find_spec("habana_frameworks") is None:
        return False
    import habana_frameworks.torch.hpu as hpu  # noqa: F401  (registers the "hpu" device)

    return hpu.is_available()


def resolve_device(name: str = "auto") -> torch.device:
    """auto: HPU when its plugin imports and a device is present, else CUDA, else MPS, else CPU."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise InputError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "auto":
        if _hpu_available():
            return torch.device("hpu")
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for, but torch sees no CUDA device")
    if name == "hpu" and not _hpu_available():
        raise InputError("device 'hpu' asked for, but habana_frameworks is not installed or sees no Gaudi")
    if name == "mps" and not torch.backends.mps.is_available():
        raise InputError("device 'mps' asked for, but torch sees no MPS device")
    return torch.device(name)


def step(device: torch.device) -> None:
    """End of a unit of work. Habana's lazy mode only executes the graph it has built at mark_step()."""
    if device.type == "hpu":
        import habana_frameworks.torch.core as htcore

        htcore.mark_step()


def autocast(device: torch.device):
    """Mixed precision for training: fp16 on CUDA, bf16 on Gaudi (as the Gaudi port of the reconstruction
    paper runs); full precision elsewhere."""
    dtype = {"cuda": torch.float16, "hpu": torch.bfloat16}.get(device.type)
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling where autocast computes in fp16, whose small gradients underflow; elsewhere a scaler
    that passes everything through."""
    return torch.amp.GradScaler("cuda" if device.type == "cuda" else "cpu", enabled=device.type == "cuda")


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so that timings measure work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    step(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak device memory since reset_peak_memory on CUDA; on the host, the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def default_threads(workers: int = 1) -> int:
    """Torch threads for one of `workers` processes: oversubscribed cores make a forward pass 10x slower.
    The cores are those this process may run on (taskset, a Slurm or container cpuset), not the machine's."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, workers))
