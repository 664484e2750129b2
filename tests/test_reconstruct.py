"""Reconstruction after pruning: lr against least squares solved another way, br lowering the error with
every mask kept, gp training on the dense path, and bad input."""
import re
import warnings

import pytest
import torch

import pruners
from pruners.errors import InputError
from pruners.reconstruct import Reconstruction
from pruners.reconstruct_math import refit_rows
from pruners.spec import Sparsity
from pruners.walker import run_block

from conftest import tiny_llama

CPU = torch.device("cpu")
HALF = Sparsity.parse("unstructured", 0.5)


@pytest.mark.parametrize("rows", [1, 4, 6])
def test_lr_is_the_least_squares_optimum_on_each_rows_support(rows):
    """Whatever number of rows a chunk of systems holds (the memory budget over 16 bytes per entry of the
    widest support's system and its factor), padding rows of narrower supports changes no row."""
    torch.manual_seed(0)
    X = torch.randn(200, 12, dtype=torch.float64)
    X[:, 3] *= 5  # uneven channels, so the refit differs from keeping the dense values
    dense = torch.randn(6, 12, dtype=torch.float64)
    kept = torch.rand(6, 12) > 0.5
    kept[2] = False
    kept[2, :3] = True  # rows keep different numbers of weights
    kept[4] = False  # and one keeps none
    got = refit_rows(dense, kept, 2 / 4 * X.T @ X, percdamp=0.0, budget=rows * 16 * int(kept.sum(dim=1).max()) ** 2)
    for r in range(6):
        S = kept[r].nonzero().flatten()
        assert (got[r][~kept[r]] == 0).all()
        if len(S):
            want = torch.linalg.lstsq(X[:, S], X @ dense[r]).solution  # min ||X_S w - X d_r||
            assert torch.allclose(got[r, S], want, atol=1e-10)
            assert not torch.allclose(got[r, S], dense[r, S], atol=1e-3)


@pytest.mark.parametrize("stages", ["lr", "obs", "br", "br+gp", "lr+br", "obs+br", "br+gp+cr"])
def test_reconstruction_keeps_every_mask_and_lowers_the_error(stages, monkeypatch):
    calibration = torch.randint(0, 96, (8, 16))
    plain, refit = tiny_llama(11, layers=2), tiny_llama(11, layers=2)
    measured = pruners.method("wanda", reconstruct="none").prune(plain, calibration, HALF, CPU)
    assert measured["recon error before"] == measured["recon error"] > 0  # none refits nothing
    original, checked = Reconstruction.apply, []

    def spy(self, step, dense):
        linears = {(step.index, n): l for n, l in step.linears.items()}
        if step.previous is not None:  # cr trains the previous block again: its zeros must hold too
            linears |= {(step.previous.index, n): l for n, l in step.previous.linears.items()}
        before = {key: (l.weight == 0, l.weight.clone()) for key, l in linears.items()}
        result = original(self, step, dense)
        for key, linear in linears.items():
            zeros, weight = before[key]
            assert torch.equal(linear.weight == 0, zeros), key  # the same zeros, exactly
            assert not torch.equal(linear.weight, weight), key  # and the kept weights refitted
        checked.append(step.index)
        return result

    monkeypatch.setattr(Reconstruction, "apply", spy)
    refitted = pruners.method("wanda", reconstruct=stages, batch_size=2).prune(refit, calibration, HALF, CPU)
    assert checked == [0, 1]
    assert refitted["recon error before"] > refitted["recon error"] > 0


@pytest.mark.parametrize("stages", ["none", "lr"])
def test_a_symbolic_metric_reports_the_errors_its_hand_written_twin_does(stages):
    """metric:wanda prunes as wanda does, so its row carries the same reconstruction errors (its compare rows
    once carried none: the metric pruner dropped what the walker returned)."""
    calibration = torch.randint(0, 96, (4, 16))
    errors = [pruners.method(m, reconstruct=stages).prune(tiny_llama(12), calibration, HALF, CPU) for m in ("wanda", "metric:wanda")]
    assert errors[0] == errors[1] and errors[0]["recon error"] > 0


def test_br_trains_norms_too_and_gp_trains_on_the_dense_path(monkeypatch):
    calibration = torch.randint(0, 96, (4, 16))
    seen = {}

    def record(self, window, inputs, targets, seed):
        step, = window
        assert inputs is step.inputs
        seen[step.index] = targets is step.path_targets, targets is step.block_targets

    monkeypatch.setattr(Reconstruction, "train", record)
    for stages, want in (("br", (False, True)), ("br+gp", (True, False))):
        pruners.method("wanda", reconstruct=stages).prune(tiny_llama(12, layers=2), calibration, HALF, CPU)
        assert seen == {0: want, 1: want}
    monkeypatch.undo()
    model = tiny_llama(12, layers=2)
    norms = {n: p.clone() for n, p in model.named_parameters() if "norm" in n and "layers" in n}
    pruners.method("wanda", reconstruct="br").prune(model, calibration, HALF, CPU)
    params = dict(model.named_parameters())
    assert all(not torch.equal(params[n], before) for n, before in norms.items())


@pytest.mark.parametrize("layers", [1, 4])
def test_cr_trains_windows_of_two_blocks_in_order_each_block_twice_on_the_dense_path(layers, monkeypatch):
    calibration = torch.randint(0, 96, (4, 16))
    windows = []
    original = Reconstruction.train

    def record(self, window, inputs, targets, seed):
        step = window[-1]
        assert targets is step.path_targets  # the dense path's outputs of the window's last block
        if len(window) == 2:
            assert inputs is window[0].inputs  # the window starts where its first block's inputs enter
            assert window[0].index == step.index - 1
        elif step.index > 0:  # the last block alone: on its inputs anew, after the block before changed
            assert inputs is not step.inputs and step.last
            for (got, _, _), (want, _, _) in zip(inputs, run_block(step.previous.block, step.previous.inputs)):
                assert torch.equal(got, want)
        windows.append([s.index for s in window])
        original(self, window, inputs, targets, seed)

    monkeypatch.setattr(Reconstruction, "train", record)
    errors = pruners.method("wanda", reconstruct="br+gp+cr").prune(tiny_llama(13, layers=layers), calibration, HALF, CPU)
    want = [[0], [0]] if layers == 1 else [[0], [0, 1], [1, 2], [2, 3], [3]]
    assert windows == want
    assert errors["recon error before"] > errors["recon error"] > 0


def test_a_reconstruction_is_a_column_and_a_label_in_compare(tiny_dir, tmp_path, monkeypatch, capsys):
    import csv

    from evolve import results
    from evolve.cli import main

    directions = {}
    real_plot = results.plot_compare
    monkeypatch.setattr(results, "plot_compare", lambda path, rows, cols, model, lower_is_better: (
        directions.update({c: lower_is_better(c) for c in cols}), real_plot(path, rows, cols, model, lower_is_better)))
    out = tmp_path / "cmp"
    assert main(["compare", "--model", tiny_dir, "--nsamples", "2", "--seqlen", "32", "--eval-tokens", "128",
                 "--methods", "dense,magnitude,wanda", "--reconstruct", "none,lr", "--out", str(out)]) == 0
    with (out / "compare.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["dense", "magnitude +none", "magnitude +lr", "wanda +none", "wanda +lr"]
    assert rows[0]["recon error"] == ""
    for r in rows[1:]:
        assert float(r["recon error before"]) >= float(r["recon error"]) > 0
    # on the terminal, the rows after dense's come under a header that has their errors
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [line.startswith("| method") for line in printed] == [True, False, True, False, False, False, False]
    assert printed[2].endswith("| recon error before | recon error | prune s | eval s | peak MB |")
    assert printed[3].count("|") == printed[2].count("|")
    # the plot's panels: errors, like perplexity, are better lower
    assert directions == {"perplexity": True, "recon error before": True, "recon error": True}


@pytest.mark.parametrize("text, message", [
    ("xr", "unknown reconstruction 'xr'"),
    ("gp", "write br+gp"),
    ("br+cr", "write br+gp+cr"),
    ("lr+zz", "unknown reconstruction 'zz'"),
    ("lr+obs", "choose one"),
])
def test_bad_reconstructions_are_one_line(text, message, tiny_dir, capsys):
    from evolve.cli import main

    with pytest.raises(InputError, match=re.escape(message)):
        Reconstruction.parse(text)
    common = ["--model", tiny_dir, "--nsamples", "2", "--seqlen", "32", "--eval-tokens", "64"]
    assert main(["baseline", *common, "--method", "wanda", "--reconstruct", text]) == 2
    assert main(["compare", *common, "--methods", "wanda", "--reconstruct", f"none,{text}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(message in line for line in err)


def test_br_trains_in_fp32_and_gives_the_block_back_in_its_dtype():
    calibration = torch.randint(0, 96, (4, 16))
    model = tiny_llama(14, layers=2).to(torch.bfloat16)
    errors = pruners.method("wanda", reconstruct="br").prune(model, calibration, HALF, CPU)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert errors["recon error before"] > errors["recon error"]


def test_mixed_precision_where_the_device_has_it():
    from pruners.device import autocast, grad_scaler

    with warnings.catch_warnings():  # without CUDA torch warns that it would disable autocast
        warnings.simplefilter("ignore")
        assert autocast(torch.device("cuda")).fast_dtype == torch.float16
    assert not isinstance(autocast(CPU), torch.autocast)  # fp32 on the CPU, and no loss scaling
    assert not grad_scaler(CPU).is_enabled()
