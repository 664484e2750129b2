"""The host: one model loaded once, its dense state, its calibration and evaluation tokens and its
statistics, shared by `evolve baseline/apply/compare/eval` and by every fitness worker.

Between methods the host restores the dense model from a snapshot of its whole state, not by copying
weights back by name, so a method may change shapes or drop modules and the next one still starts dense.
"""
import copy
import functools
import sys
from collections.abc import Callable

import torch

import gradients
from evolve.perplexity import windows
from pruners import base, data, models
from pruners.device import resolve_device
from pruners.errors import InputError
from pruners.stats import GRADIENT_LEAVES, WALKED_LEAVES
from pruners.walker import walk


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_data(model: str, calib: str, eval: str, self_data: str | None, self_nsamples: int,
              grad_calib: str | None) -> tuple[list, str, str, str | None]:
    """What a host reads before its model loads, so that bad names and sources fail before any loading:
    (the model's own samples, calibration text, evaluation text, the text G comes from or None)."""
    models.resolve(model)
    if bool(self_data) != bool(self_nsamples):
        raise InputError("--self-data FILE and --self-nsamples N go together")
    own = data.read_self_data(self_data, self_nsamples) if self_data else []
    calib_text, eval_text = data.texts(calib, eval)
    return own, calib_text, eval_text, data.calibration_text(grad_calib, eval) if grad_calib else None


class Host:
    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        device: str = "auto",
        calib: str = "pydoc",
        eval: str = "pydoc",
        nsamples: int = 128,
        seqlen: int | None = None,
        seed: int = 0,
        eval_tokens: int | None = None,
        batch_size: int = 8,
        self_data: str | None = None,
        self_nsamples: int = 0,
        grad_calib: str | None = None,
        on_device: bool = False,
        eval_skip_tokens: int = 0,
        log: Callable[[str], None] = say,
    ):
        """on_device: keep the whole model (and its snapshot) on the device, for repeated evaluation as a
        fitness worker does; otherwise the model stays on the host and methods move one block at a time.
        grad_calib: the text G and F are computed from (default: the calibration text), so that a metric's
        gradients need not come from the domain it is scored on."""
        self.name, self.log, self.batch_size = model, log, batch_size
        self.device = resolve_device(device)
        self.dtype = models.resolve_dtype(dtype, self.device)
        own, self.calib_text, self.eval_text, self.grad_text = read_data(model, calib, eval, self_data, self_nsamples, grad_calib)
        self.calib_source, self.eval_tokens = calib, eval_tokens
        log(f"loading {model} ({self.dtype}) for {self.device}")
        self.model, self.tokenizer = models.load(model, self.dtype)
        self.seqlen = models.window_length(self.model, seqlen)
        self.seed, self._nsamples, self._own = seed, nsamples, own
        self.calibration = self.calibration_of(seed)
        self.windows = windows(data.evaluation_tokens(self.tokenizer, self.eval_text), self.seqlen, eval_tokens, eval_skip_tokens)
        if on_device:
            self.model.to(self.device)
        # The dense state where the weights live now: the host's memory, or the device's for a worker.
        self._dense = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self._config = copy.deepcopy(self.model.config)
        self.dense_counts = base.counts(self.model)  # (target weights, all parameters) before any pruning
        self._statistics: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
        self._other_windows: dict[str, torch.Tensor] = {}

    def windows_of(self, source: str) -> torch.Tensor:
        """(n, seqlen) evaluation windows of another text source, cut as the host's own are (seqlen, at
        most eval_tokens), tokenized once. The calibration source itself gives its evaluation split."""
        if source not in self._other_windows:
            text = data.evaluation_text(source, self.calib_source)
            tokens = data.evaluation_tokens(self.tokenizer, text)
            self._other_windows[source] = windows(tokens, self.seqlen, self.eval_tokens, name=f"evaluation text {source}")
        return self._other_windows[source]

    def dense_weight(self, target: str) -> torch.Tensor:
        """The dense (out, in) weight of a target linear ('3.mlp.up_proj'), from the snapshot."""
        return self._dense[self._state_key[target]]

    @property
    def _state_key(self) -> dict[str, str]:
        names = {id(m): n for n, m in self.model.named_modules()}
        return {t: f"{names[id(lin)]}.weight" for t, lin in models.target_linears(self.model).items()}

    @torch.no_grad()
    def restore(self) -> None:
        """Put the dense model back. Same structure: copy the snapshot into the live tensors (they keep
        their device); a method changed shapes or modules: rebuild the model from the dense config."""
        state = self.model.state_dict()
        same = state.keys() == self._dense.keys() and all(state[k].shape == v.shape for k, v in self._dense.items())
        if same:
            for key, value in self._dense.items():
                state[key].copy_(value)
            return
        from transformers.initialization import no_init_weights

        device = next(self.model.parameters()).device
        with no_init_weights(), device:  # its weights come from the snapshot: no random init
            model = type(self.model)(copy.deepcopy(self._config)).to(self.dtype)
        model.load_state_dict(self._dense)
        self.model = model.eval()

    def place(self) -> None:
        """The whole model on the device, for evaluation."""
        self.model.to(self.device)

    @functools.cache
    def calibration_of(self, seed: int, gradients: bool = False) -> torch.Tensor:
        """(nsamples [+ self_nsamples], seqlen) calibration windows drawn with `seed`, the model's own text
        (--self-data) after the sampled ones; for the gradients of G and F, from the grad_calib text where
        one is named, its nsamples windows alone. Drawn once per seed."""
        if gradients and self.grad_text is not None:
            return data.calibration_samples(self.tokenizer, self.grad_text, self._nsamples, self.seqlen, seed)
        samples = data.calibration_samples(self.tokenizer, self.calib_text, self._nsamples, self.seqlen, seed)
        return torch.cat([samples, data.self_samples(self.tokenizer, self._own, self.seqlen)]) if self._own else samples

    def statistic(self, name: str, seed: int | None = None) -> dict[str, torch.Tensor]:
        """A statistic of the dense model by target name, computed once per calibration seed (None: the
        host's own): 'X' (input norms per channel, (1, in)), 'D' (SparseGPT's inverse Hessian diagonal,
        (1, in)), 'H' (the Hessian 2/N X^T X, (in, in)), 'G' or 'F' (from the loss gradients, (out, in), cached
        on disk across runs, from the grad_calib text when one is named)."""
        seed = self.seed if seed is None else seed
        if (name, seed) not in self._statistics:
            self.restore()
            self._statistics[name, seed] = STATISTICS[name](self, self.calibration_of(seed, gradients=name in GRADIENT_LEAVES))
        return self._statistics[name, seed]


def _walked(leaf: str, collector: str, derive=lambda s: s) -> Callable[[Host, torch.Tensor], dict[str, torch.Tensor]]:
    """A statistic the walker gathers (X, D, H), of every target linear from the dense model, pruning nothing."""

    def compute(host: Host, calibration: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}

        def record(step):
            for name, s in step.stats.items():
                out[f"{step.index}.{name}"] = derive(s[collector])

        host.log(f"statistics: {leaf} from the dense model")
        walk(host.model, calibration, host.device, (collector,), record, host.batch_size)
        return out

    return compute


def _gradients(leaf: str) -> Callable[[Host, torch.Tensor], dict[str, torch.Tensor]]:
    """A leaf the gradients package computes (G, F): read from its cache, or computed with the others."""

    def compute(host: Host, calibration: torch.Tensor) -> dict[str, torch.Tensor]:
        host.place()
        stat, path, seconds = gradients.load_or_compute(host.model, host.name, calibration, host.device, leaf, log=host.log)
        host.log(f"{leaf} {'computed in %.1f s' % seconds if seconds else 'read'}: {path}")
        return stat

    return compute


# The leaves, and H, each linear's Hessian (in, in), for the search's fixed-mask update (FitnessSetup.update).
STATISTICS: dict[str, Callable[[Host, torch.Tensor], dict[str, torch.Tensor]]] = {
    **{leaf: _gradients(leaf) for leaf in GRADIENT_LEAVES}, "H": _walked("H", "H"), **{leaf: _walked(leaf, *WALKED_LEAVES[leaf]) for leaf in WALKED_LEAVES}}
