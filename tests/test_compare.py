import csv
import json
from pathlib import Path

import pytest

from evolve.cli import main


def test_compare_writes_every_requested_row(tiny_dir, tmp_path, capsys, monkeypatch):
    from pruners.symbolic import Metric

    score = Metric.score

    def nan_on_one_layer(self, name, weight, stats):  # a metric that turns NaN on a real layer, not on the probe
        out = score(self, name, weight, stats)
        return out + float("nan") if self.metric == "wanda" and name == "1.mlp.up_proj" else out

    monkeypatch.setattr(Metric, "score", nan_on_one_layer)
    out = tmp_path / "cmp"
    legal = tmp_path / "legal.txt"
    legal.write_text(" ".join(f"Clause {i}: the licensee shall keep every notice intact." for i in range(200)))
    methods = "dense,magnitude,wanda,sparsegpt,surgeon,metric:pruner-zero,metric:wanda"
    code = main(["compare", "--model", tiny_dir, "--nsamples", "2", "--seqlen", "32", "--eval-tokens", "256",
                 "--methods", methods, "--pattern", "unstructured,2:4,row-column", "--out", str(out),
                 "--also-eval", f"text:{legal}"])
    assert code == 0
    with (out / "compare.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["point"]) for r in rows] == [("dense", "-")] + [
        (m, p) for m in ["magnitude", "wanda", "sparsegpt", "surgeon", "metric:pruner-zero", "metric:wanda"]
        for p in (["50%", "2:4", "row-column 50%"] if m == "surgeon" else ["50%", "2:4"])  # what each method prunes
    ]
    done = [r for r in rows if not r["error"]]
    assert len(done) == 12
    assert all(abs(float(r["sparsity"]) - 0.5) < 0.01 for r in done if r["method"] != "dense")
    assert all(float(r["removed"]) == 0 and r["params"] == rows[0]["params"] for r in done)  # zeros remove nothing
    assert all(r["error"] == "metric mul(abs(W), X) yields NaN or Inf on layer 1.mlp.up_proj" for r in rows if r["error"])
    printed = capsys.readouterr().out
    assert printed.count("\n| ") == 14  # header and 14 rows
    assert (out / "compare.json").is_file() and (out / "compare.png").is_file()
    assert (out / "compare.md").read_text().count("\n| ") == 14  # a line per row after the header
    assert main(["show", str(out)]) == 0
    assert capsys.readouterr().out == (out / "compare.md").read_text()
    assert all(float(r["perplexity"]) > 1 and float(r["perplexity legal"]) > 1 for r in done)


def test_compare_runs_each_layer_method_once_per_allocation(tiny_dir, tmp_path):
    out = tmp_path / "cmp"
    code = main(["compare", "--model", tiny_dir, "--nsamples", "2", "--seqlen", "32", "--eval-tokens", "128",
                 "--methods", "dense,magnitude,surgeon", "--sparsity", "0.6", "--allocations", "uniform,owl", "--out", str(out)])
    assert code == 0
    with (out / "compare.csv").open() as f:
        rows = {(r["method"], r["point"]): r for r in csv.DictReader(f)}
    assert list(rows) == [("dense", "-"), ("magnitude", "60%"), ("magnitude", "60% owl"), ("surgeon", "60%")]
    owl, uniform = rows[("magnitude", "60% owl")], rows[("magnitude", "60%")]
    assert not owl["error"] and abs(float(owl["sparsity"]) - 0.6) < 0.01  # the blocks differ, the model keeps the target
    assert owl["perplexity"] != uniform["perplexity"]


def test_compare_refuses_points_no_method_prunes(tmp_path, capsys):
    assert main(["compare", "--methods", "dense,wanda", "--pattern", "row-column", "--out", str(tmp_path / "a")]) == 2
    assert "method wanda prunes unstructured, N:M: none of the compared patterns" in capsys.readouterr().err
    assert main(["compare", "--blocks", "2", "--out", str(tmp_path / "b")]) == 2
    assert "add blocks to --pattern" in capsys.readouterr().err
    assert main(["compare", "--pattern", "blocks", "--out", str(tmp_path / "c")]) == 2
    assert "needs its points: --blocks" in capsys.readouterr().err
    degenerate = tmp_path / "x_only.json"  # Pruner-Zero's JSON for X^2: refused, not a failed row at the end
    degenerate.write_text(json.dumps({"data": "sqr", "left": {"data": "X"}}))
    assert main(["compare", "--methods", f"dense,wanda,metric:{degenerate}", "--out", str(tmp_path / "d"),
                 "--nsamples", "1", "--seqlen", "32", "--eval-tokens", "64"]) == 2
    assert "sqr(X) is degenerate" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [degenerate]


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parent.parent.glob("configs/compare-*.yaml")), ids=lambda p: p.name)
def test_shipped_compare_configs_name_real_methods_and_points(path):
    import pruners
    from evolve import config
    from pruners.reconstruct import Reconstruction
    from pruners.spec import Sparsity

    cfg = config.load(str(path), {})
    kinds = {Sparsity.parse(p, None, None, 1 if p == "blocks" else None).kind() for p in cfg.compare.patterns}
    for name in cfg.compare.methods:
        method = pruners.method(name, **cfg.compare.options.get(name.split("(")[0], {}))
        assert name == "dense" or kinds & set(method.patterns), name
    for stages in cfg.compare.reconstruct:
        Reconstruction.parse(stages)


def test_a_killed_compare_resumes_to_the_uninterrupted_table(tiny_dir, tmp_path, monkeypatch, capsys):
    from evolve.workbench import Workbench

    args = ["compare", "--model", tiny_dir, "--nsamples", "2", "--seqlen", "32", "--eval-tokens", "128",
            "--methods", "dense,magnitude,wanda", "--pattern", "unstructured,2:4"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(args + ["--out", str(whole)]) == 0
    run, ran = Workbench.run, []

    def killed_at_the_fourth_row(self, method, spec):
        if len(ran) == 3:
            raise KeyboardInterrupt
        ran.append((method.label(), spec.point()))
        return run(self, method, spec)

    monkeypatch.setattr(Workbench, "run", killed_at_the_fourth_row)
    assert main(args + ["--out", str(cut)]) == 130
    assert main(args + ["--out", str(cut)]) == 2  # a table is continued, never written over
    assert f"folder {cut} is not empty; continue it with --resume {cut}" in capsys.readouterr().err
    assert main(["compare", "--resume", str(cut), "--nsamples", "4"]) == 2  # other calibration: rows would not compare
    assert "data.nsamples = 2, not 4" in capsys.readouterr().err
    assert main(["compare", "--resume", str(tmp_path / "none")]) == 2
    assert "is not a run folder to resume (no config.yaml)" in capsys.readouterr().err
    torn = tmp_path / "torn"
    torn.mkdir()
    (torn / "config.yaml").write_text((cut / "config.yaml").read_text())
    (torn / "compare.json").write_text('{"rows": [')
    assert main(["compare", "--resume", str(torn)]) == 2
    assert f"cannot read {torn / 'compare.json'}" in capsys.readouterr().err

    ran.clear()
    monkeypatch.setattr(Workbench, "run", lambda self, method, spec: ran.append((method.label(), spec.point())) or run(self, method, spec))
    assert main(["compare", "--resume", str(cut)]) == 0
    assert ran == [("wanda", "50%"), ("wanda", "2:4")]  # only the rows the kill left out
    measured = lambda folder: [{k: r[k] for k in ("method", "point", "sparsity", "scores", "error")}
                               for r in json.loads((folder / "compare.json").read_text())["rows"]]
    assert measured(cut) == measured(whole)
    assert len(measured(whole)) == 5
    assert (cut / "compare.md").read_text().count("\n| ") == 5


def test_a_methods_reconstructions_plot_side_by_side_from_none_to_the_fullest():
    from evolve.results import bar_order

    labels = ["wanda +br", "magnitude +none", "wanda +none", "wanda +br+gp+cr", "magnitude +lr", "metric:W + X",
              "wanda +lr"]
    assert bar_order(labels) == [
        ("wanda +none", 0, 0.0), ("wanda +lr", 0, 1 / 3), ("wanda +br", 0, 2 / 3), ("wanda +br+gp+cr", 0, 1.0),
        ("magnitude +none", 1, 0.0), ("magnitude +lr", 1, 1.0),
        ("metric:W + X", 2, 1.0),  # " +" that starts no reconstruction is part of the name
    ]
