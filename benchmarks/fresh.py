"""Time and peak memory of one piece of work in a fresh process, with the embedded model loaded first."""
import subprocess
import sys

PROLOGUE = """
import time, torch, gradients, pruners
from pruners import data, models
from pruners.spec import Sparsity
def status(key):  # kB figures of /proc/self/status, in MiB
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(key + ':')) / 1024
model, tok = models.load(models.EMBEDDED)
for p in model.parameters():
    p.data.mul_(1)  # the weights load memory-mapped: write them once so the baseline holds them all
calib = data.calibration_samples(tok, data.texts('pydoc', 'pydoc')[0], {nsamples}, {seqlen}, 0)
open('/proc/self/clear_refs', 'w').write('5')  # Linux: the peak (VmHWM) restarts from the current RSS
loaded = status('VmRSS')
start = time.perf_counter()
"""


def measure(work: str, nsamples: int, seqlen: int) -> tuple[float, float, float]:
    """(seconds, RSS with the model loaded, peak RSS during the work) for `work`, Python over `model`
    and `calib` ((nsamples, seqlen) token ids from pydoc)."""
    code = PROLOGUE.format(nsamples=nsamples, seqlen=seqlen) + work + "\nprint(time.perf_counter() - start, loaded, status('VmHWM'))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[-3]), float(out[-2]), float(out[-1])
