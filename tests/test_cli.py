import pytest

from evolve.cli import main

# Should a check made before the model loads go missing, the work it lets through is short.
SMALL = ["--nsamples", "1", "--seqlen", "32", "--eval-tokens", "64"]
SEARCH_SMALL = ["--serial", "--generations", "0", "--population", "2", *SMALL[:4], "--fitness-tokens", "32", "--validation-tokens", "0"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["baseline", "--method", "nope"], "unknown method 'nope'"),
        (["baseline", "--model", "llama-99b"], "unknown model 'llama-99b'"),
        (["baseline", "--sparsity", "1.5"], "strictly between 0 and 1"),
        (["baseline", "--pattern", "4:2"], "0 < N < M"),
        (["baseline", "--calib", "text:/no/such/file.txt"], "no text file or folder at /no/such/file.txt"),
        (["baseline", "--calib", "books"], "unknown text source 'books'"),
        # SparseGPT and the surgeon choose masks their own way: the group was ignored
        (["baseline", "--method", "sparsegpt", "--group", "column", *SMALL],
         "method sparsegpt does not choose its masks from scores alone: --group is for the score methods"),
        (["baseline", "--method", "surgeon", "--group", "layer", *SMALL], "method surgeon does not choose its masks from scores alone: --group"),
        (["baseline", "--grad-calib", "text:/no/such/file.txt"], "no text file or folder at /no/such/file.txt"),
        (["baseline", "--config", "/no/such.yaml"], "cannot read config /no/such.yaml"),
        (["baseline", "--nsamples", "0"], "data.nsamples"),
        (["compare", "--methods", "dense,nope"], "unknown method 'nope'"),
        (["baseline", "--device", "tpu"], "unknown device 'tpu'"),
        # refused before the model loads (its lines on stderr would make two), the short data as a safeguard
        (["apply", "/no/such/metric.json", *SMALL], "no metric file at /no/such/metric.json"),
        (["apply", "mul(W, Y)", *SMALL], "unknown operator or leaf 'Y'"),
        (["apply", "mul(X, X)", *SMALL], "is degenerate"),
        (["baseline", "--also-eval", "text:/no/such/legal.txt", *SMALL], "no text file or folder at /no/such/legal.txt"),
        (["apply", "", *SMALL], "the metric is empty"),
        (["search", "--sparsity", "0.5,,0.6"], "argument --sparsity: expected numbers separated by commas"),
        (["search", "--pattern", "unstructured,2:4,2:4", *SEARCH_SMALL], "sparsity point 2:4 is named twice"),
        (["search", "--pattern", "", *SEARCH_SMALL], "a search needs a sparsity point"),
        (["search", "--pattern", "2:4", "--sparsity", "0.6", *SEARCH_SMALL],
         "--sparsity gives the points of unstructured, row-column, channels; --pattern names none of them"),
        (["compare", "--methods", "wanda", "--pattern", "2:4,4:8", "--sparsity", "0.6", *SMALL], "--pattern names none of them"),
        # the N:M points ignored them, and the metric file named them for apply
        (["search", "--pattern", "2:4", "--group", "column", *SEARCH_SMALL], "--group column is for the unstructured points"),
        (["search", "--pattern", "2:4", "--allocation", "uniform,owl", *SEARCH_SMALL], "--allocation uniform,owl is for the unstructured points"),
        (["search", "--eval-tokens", "64", *SEARCH_SMALL], "unrecognized arguments: --eval-tokens 64"),
        (["search", "--fitness-texts", "pydoc", *SEARCH_SMALL], "fitness text pydoc is named twice in --fitness-texts and --eval"),
        (["search", "--fitness-texts", "text:/no/such/file.txt", *SEARCH_SMALL], "no text file or folder at /no/such/file.txt"),
        (["search", "--fitness-against", "mul(W, Y)", *SEARCH_SMALL], "--fitness-against 'mul(W, Y)': unknown operator or leaf 'Y'"),
        (["baseline", "wanda"], "unrecognized arguments: wanda (see evolve baseline --help)"),
        (["generate-data", "--out", "/", "--force", "--nsamples", "1", "--seqlen", "8"], "/ is a folder; --out names the JSONL file to write"),
        (["generate-data", "--out", "/dev/null/x.jsonl", "--eval-tokens", "64"], "unrecognized arguments: --eval-tokens 64 (see evolve generate-data --help)"),
        (["compare", "--methods", "", *SMALL], "--methods names no method to compare"),
        (["compare", "--resume", "/no/such/run", "--out", "/no/such/other"], "--resume goes on in the folder it names; leave out --out"),
        (["search", "--resume", "/no/such/run", "--out", "/no/such/other"], "--resume goes on in the folder it names"),
        (["search", "--resume", "/no/such/run", "--config", "/no/such.yaml"], "--resume reads the run's own config.yaml; leave out --config"),
        (["compare", "--methods", "wanda", "--allocations", "owl", "--pattern", "2:4", *SMALL],
         "--allocations spreads the unstructured points' sparsity over the blocks: add unstructured to --pattern"),
        (["compare", "--methods", "wanda,magnitude,wanda", *SMALL], "wanda at 50% is asked for twice (by --methods, "),
        (["compare", "--methods", "dense,wanda,dense", *SMALL], "dense is asked for twice"),
        (["compare", "--methods", "wanda", "--sparsity", "0.5,0.6,0.5", *SMALL], "wanda at 50% is asked for twice"),
        (["eval", "--model", "/", *SMALL[2:]], "no model in folder /: it has no config.json"),
        # flags a command would ignore are not offered: eval draws no calibration, gradients evaluate nothing
        (["eval", "--nsamples", "1"], "unrecognized arguments: --nsamples 1 (see evolve eval --help)"),
        (["eval", "--self-data", "own.jsonl"], "unrecognized arguments: --self-data own.jsonl"),
        (["eval", "--limit", "5", *SMALL[2:]], "--limit and --task-text (evaluate.limit, evaluate.task_text) are options of --tasks"),
        (["baseline", "--task-text", "pydoc", *SMALL], "are options of --tasks: name the tasks"),
        (["gradients", "--eval-tokens", "64"], "unrecognized arguments: --eval-tokens 64 (see evolve gradients --help)"),
        # a search whose generations would copy its 2 elites (the default) and make no offspring
        (["search", *SEARCH_SMALL, "--generations", "1"],
         "option: search: 2 elites (search.elites) of a population of 2 leave no room for offspring"),
        (["search", *SEARCH_SMALL, "--seed-metrics", "wanda,pruner-zero,gblm"],
         "option: search: 3 seed metrics (search.seed_metrics) do not fit a population of 2"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("evolve: error: ") and message in err[0], err


@pytest.mark.parametrize(
    "yaml, command, message",
    [
        ("data:\n  nsampels: 4\n", "baseline", "unknown key 'data.nsampels'"),
        ("data: [unclosed\n", "baseline", "is not valid YAML"),
        ("prune:\n  method: wanda\n  options: {batchsize: 4}\n", "baseline", "option batchsize"),
        # DEAP drew the first trees' heights from an empty range and ended in a traceback
        ("search:\n  init_min_height: 4\n", "search",
         "search: tree heights must keep init_min_height (4) <= init_max_height (3) <= max_height (6)"),
        ("search:\n  max_height: 2\n", "search",
         "search: tree heights must keep init_min_height (1) <= init_max_height (3) <= max_height (2)"),
        ("data:\n  self_data: self.jsonl\n  self_nsamples: 4\n", "search", "a search does not use data.self_data"),
        # options for a method or score that is not run were ignored, a misspelt name's too
        ("compare:\n  methods: [wanda]\n  options: {sparsgpt: {blocksize: 64}}\n", "compare",
         "compare.options names sparsgpt, not a compared method (wanda)"),
        ("evaluate:\n  options: {perplexty: {texts: [pydoc]}}\n", "baseline",
         "evaluate.options names perplexty, not a measured score (perplexity)"),
    ],
)
def test_a_bad_config_is_one_line_and_leaves_no_folder(yaml, command, message, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml)
    small = SEARCH_SMALL if command == "search" else SMALL
    assert main([command, "--config", str(path), "--save" if command == "baseline" else "--out", str(tmp_path / "run"), *small]) == 2
    assert message in _one_line(capsys)
    assert not (tmp_path / "run").exists()


def test_a_search_that_cannot_start_leaves_no_folder(tmp_path, capsys):
    """Too few fitness tokens for one window is found by the worker, once the model has loaded: the folder
    made for the run, with no evaluation in it, is taken away; a folder the user made is kept."""
    for run, made_by_user in ((tmp_path / "new" / "run", False), (tmp_path / "mine", True)):
        if made_by_user:
            run.mkdir()
        assert main(["search", "--out", str(run), *SEARCH_SMALL, "--fitness-tokens", "8"]) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith("needs at least one window of 32 tokens, it has 8")
        assert run.exists() == made_by_user and (not made_by_user or list(run.iterdir()) == [])


def test_a_search_that_stops_after_an_evaluation_keeps_its_folder(tmp_path, capsys, monkeypatch):
    import evolve.workers
    from pruners.errors import InputError

    class OneThenStops:  # one candidate evaluated, then the worker cannot be restarted
        def __init__(self, setup, log):
            pass

        def map(self, jobs, thresholds, on_result, split="fitness"):
            on_result(jobs[0], {"fitness": 10.0, "status": "ok", "error": "", "points": "{}", "seconds": 0.0, "worker": "w"})
            raise InputError("a Ray worker failed to start: no room")

        def close(self):
            pass

    monkeypatch.setattr(evolve.workers, "SerialPool", OneThenStops)
    run = tmp_path / "run"
    assert main(["search", "--out", str(run), *SEARCH_SMALL]) == 2
    assert _one_line(capsys) == "evolve: error: a Ray worker failed to start: no room"
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "evaluations.sqlite"]  # resumable


def test_non_empty_save_folder_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["baseline", "--model", "no-such-alias", "--save", str(tmp_path)]) == 2
    assert main(["baseline", "--save", str(tmp_path)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_a_model_that_cannot_be_reached_names_the_embedded_default(capsys):
    assert main(["baseline", "--model", "evolve-tests/no-such-model", "--eval-tokens", "64"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("evolve: error: cannot load model 'evolve-tests/no-such-model'")
    assert "smollm2-135m" in last


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("evolve: error: "), err
    return err[0]


def test_a_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys):
    from evolve.workbench import check_folder

    blocker = tmp_path / "a-file"  # no folder can be made inside a file, whoever runs the test
    blocker.write_text("")
    for argv in (["baseline", "--save", f"{blocker}/pruned", *SMALL], ["compare", "--out", f"{blocker}/cmp", *SMALL],
                 ["search", "--out", f"{blocker}/run", *SEARCH_SMALL]):
        assert main(argv) == 2
        assert f"evolve: error: cannot write to folder {blocker}" in _one_line(capsys)  # one line: no model loaded
    for argv in (["baseline", "--save", str(blocker), *SMALL], ["generate-data", "--out", f"{blocker}/self.jsonl", *SMALL[:4]]):
        assert main(argv) == 2
        assert f"evolve: error: {blocker} is a file, not a folder" in _one_line(capsys)
    check_folder(tmp_path / "new" / "deeper")
    assert list(tmp_path.iterdir()) == [blocker]  # the check takes away the folders it made


def test_an_extra_text_too_short_for_a_window_is_refused_before_pruning(tmp_path, capsys):
    short = tmp_path / "legal.txt"
    short.write_text("short text here\n")  # 4 tokens
    assert main(["baseline", "--method", "wanda", "--also-eval", f"text:{short}", *SMALL]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"evolve: error: evaluation text text:{short} needs at least one window of 32 tokens, it has 4"
    assert not any(line.startswith("pruning") for line in err), err  # the model loaded, no method ran


@pytest.mark.e2e  # lm-eval's task index: 20 s
def test_bad_tasks_are_one_line_before_any_model_loads(tmp_path, capsys, monkeypatch):
    import datasets

    out = tmp_path / "cmp"
    assert main(["compare", "--tasks", "last-word,nope", "--out", str(out)]) == 2
    assert "unknown task 'nope'; offline tasks: last-word, continuation" in _one_line(capsys)
    assert main(["eval", "--tasks", "last-word", "--limit", "0"]) == 2
    assert "evaluate.limit" in _one_line(capsys)
    short = tmp_path / "short.txt"
    short.write_text("Too short to build a task from.")
    assert main(["baseline", "--tasks", "continuation", "--task-text", f"text:{short}"]) == 2
    assert "task continuation: the text" in _one_line(capsys)

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)  # the same wherever the hub is reachable
    assert main(["compare", "--tasks", "boolq", "--out", str(out)]) == 2
    assert "task boolq: its data cannot be reached" in _one_line(capsys)
    assert not out.exists()  # nothing half-written


def test_a_search_refuses_a_missing_text_before_making_its_folder(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["search", "--eval", "text:/no/such/legal.txt", "--out", str(run), *SEARCH_SMALL]) == 2
    assert "no text file or folder at /no/such/legal.txt" in _one_line(capsys)
    assert not run.exists()


def test_a_search_refuses_a_device_this_machine_has_not_got_before_starting_ray(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("habana_frameworks"):
        pytest.skip("this machine may have a Gaudi")
    run = tmp_path / "run"
    # --serial: were the check gone, this fails (a folder made) instead of Ray waiting for the resource for ever
    assert main(["search", "--device", "hpu", "--out", str(run), *SEARCH_SMALL]) == 2
    assert "device 'hpu' asked for" in _one_line(capsys)
    assert not run.exists()


def test_compare_refuses_a_bad_metric_before_pruning_any_method(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--methods", "dense,wanda,metric:/no/such/metric.json", *SMALL]
    assert main([*argv, "--out", str(out)]) == 2
    assert "no metric file at /no/such/metric.json" in _one_line(capsys)
    assert not out.exists()  # no row was run or written


def test_a_point_the_loaded_model_cannot_take_is_refused_before_any_pruning(tiny_dir, tmp_path, capsys):
    """The tiny model's linears take 32 and 64 inputs and it has 2 blocks: 1:64 groups do not tile 32, and
    removing 2 blocks leaves none. Each is one line, before the first row of a compare, even a row of
    another method that could run; SparseGPT pruned 1:64's odd groups silently, the surgeon fell over."""
    data = ["--model", tiny_dir, *SMALL]
    for method in ("wanda", "sparsegpt", "surgeon"):
        assert main(["baseline", "--method", method, "--pattern", "1:64", *data]) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith("pattern 1:64 needs every linear's input width to be a multiple of 64; "
                                          "this model has linears of 32 inputs")
    out = tmp_path / "cmp"
    argv = ["compare", "--methods", "dense,layer-drop", "--pattern", "blocks", "--blocks", "1,2", "--out", str(out), *data]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1] == "evolve: error: cannot remove 2 of 2 blocks: this model has 2, and one must stay"
    assert captured.out == "" and not out.exists()  # not even the dense row ran
    assert main(["search", "--model", tiny_dir, "--pattern", "1:64", "--out", str(tmp_path / "run"), *SEARCH_SMALL]) == 2
    assert capsys.readouterr().err.strip().endswith("this model has linears of 32 inputs")
    assert not (tmp_path / "run").exists()


def _row(out: str) -> dict[str, str]:
    header, _, line = out.strip().splitlines()[-3:]
    return {k.strip(): v.strip() for k, v in zip(header.split("|"), line.split("|"))}


def test_eval_of_a_saved_folder_gives_the_perplexity_of_the_run_that_saved_it(tiny_dir, tmp_path, capsys):
    import json

    data = ["--nsamples", "4", "--seqlen", "32", "--eval-tokens", "512"]
    saved = tmp_path / "pruned"
    assert main(["baseline", "--model", tiny_dir, "--method", "wanda", "--sparsity", "0.5", "--save", str(saved), *data]) == 0
    pruned = json.loads((saved / "report.json").read_text())["result"]
    capsys.readouterr()
    assert main(["eval", "--model", str(saved), *data[2:]]) == 0
    again = _row(capsys.readouterr().out)
    assert float(again["perplexity"]) == pytest.approx(pruned["scores"]["perplexity"], rel=1e-6)
    assert float(again["sparsity"]) == pytest.approx(pruned["sparsity"], abs=1e-4)
    assert float(again["peak MB"]) > 0  # eval measured no memory: its column said 0
    assert main(["eval", "--model", tiny_dir, *data[2:]]) == 0  # the dense model differs: the save was not a no-op
    dense = float(_row(capsys.readouterr().out)["perplexity"])
    assert abs(dense / pruned["scores"]["perplexity"] - 1) > 1e-4


def test_comma_lists_keep_commas_inside_a_metric_expression():
    from evolve.cli import parser

    args = vars(parser().parse_args(["compare", "--methods", "wanda, metric:abs(mul(mul(X, W), log(X))),dense",
                                     "--tasks", "last-word,continuation"]))
    assert args["compare.methods"] == ["wanda", "metric:abs(mul(mul(X, W), log(X)))", "dense"]
    assert args["evaluate.tasks"] == ["last-word", "continuation"]


def test_apply_and_compare_spread_sparsity_as_the_metric_file_says_unless_told(tiny_dir, tmp_path, monkeypatch):
    """A metric file found under OWL's allocation (a gene search may choose it) is applied with OWL at an
    unstructured point by apply and by compare; --allocation(s) overrides it, and an N:M point or a file
    naming none stays uniform."""
    import json

    import metrics
    from evolve.workbench import Workbench

    specs = []
    real_run = Workbench.run
    monkeypatch.setattr(Workbench, "run", lambda self, method, spec: specs.append(spec) or real_run(self, method, spec))
    owl_file, plain_file = tmp_path / "owl.json", tmp_path / "plain.json"
    metrics.save(str(owl_file), metrics.parse("mul(abs(W), X)"), group="row", allocation="owl")
    metrics.save(str(plain_file), metrics.parse("mul(abs(W), X)"))
    data = ["--model", tiny_dir, "--nsamples", "4", "--seqlen", "32", "--eval-tokens", "64"]
    assert main(["apply", str(owl_file), "--sparsity", "0.6", *data]) == 0
    assert main(["apply", str(owl_file), "--sparsity", "0.6", "--allocation", "uniform", *data]) == 0
    assert main(["apply", str(owl_file), "--pattern", "2:4", *data]) == 0
    assert main(["apply", str(plain_file), "--sparsity", "0.6", *data]) == 0
    assert [s.allocation for s in specs] == ["owl", "uniform", "uniform", "uniform"]

    # compare reads the file the same way: its row is OWL's unless --allocations names the points' spread
    specs.clear()
    methods = ["--methods", f"metric:{owl_file},wanda", "--sparsity", "0.6"]
    assert main(["compare", *methods, *data, "--out", str(tmp_path / "a")]) == 0
    assert main(["compare", *methods, "--allocations", "uniform", *data, "--out", str(tmp_path / "b")]) == 0
    assert [s.allocation for s in specs] == ["owl", "uniform", "uniform", "uniform"]
    points = [row["point"] for row in json.loads((tmp_path / "a" / "compare.json").read_text())["rows"]]
    assert points == ["60% owl", "60%"]


def test_a_found_metric_of_W_and_F_alone_is_applied_at_its_calibrations_scale(tiny_dir, tmp_path, monkeypatch):
    """A search's best metric may read no X: apply passed it no calibration and it ended in a traceback,
    since F's scale follows the calibration's shape. Found on 8 x 24 tokens, applied on 2 x 12: F times
    sqrt(8 x 12 / (2 x 24)), which the same expression written with the factor prunes exactly as."""
    import torch
    from safetensors.torch import load_file

    import metrics

    monkeypatch.setenv("EVOLVE_CACHE", str(tmp_path / "cache"))
    found = tmp_path / "found.json"
    metrics.save(str(found), metrics.parse("mul(abs(W), add(F, 0.001))"),
                 fitness={"perplexity": 20.0, "context": {"nsamples": 8, "seqlen": 24}})
    data = ["--model", tiny_dir, "--nsamples", "2", "--seqlen", "12", "--eval-tokens", "64"]
    weights = {}
    for name, metric in (("found", str(found)), ("by hand", "mul(abs(W), add(mul(F, 1.4142135623730951), 0.001))"),
                         ("unscaled", "mul(abs(W), add(F, 0.001))")):
        assert main(["apply", metric, *data, "--save", str(tmp_path / name)]) == 0
        [file] = (tmp_path / name).glob("*.safetensors")
        weights[name] = {k: v == 0 for k, v in load_file(file).items() if k.endswith("proj.weight")}
    assert all(torch.equal(weights["found"][k], weights["by hand"][k]) for k in weights["found"])
    assert not all(torch.equal(weights["found"][k], weights["unscaled"][k]) for k in weights["found"])


def test_a_window_longer_than_the_context_is_refused(tiny_dir, tmp_path, capsys):
    """The tiny model's context is 256 tokens: a window of 257 ran on (RoPE extrapolated, OPT's learned
    positions end in an index error); 256 is taken, and only the short text refuses it."""
    for command in (["eval"], ["generate-data", "--out", str(tmp_path / "own.jsonl"), "--nsamples", "1"]):
        assert main([*command, "--model", tiny_dir, "--seqlen", "257"]) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == \
            "evolve: error: --seqlen 257 is longer than the model's context of 256 tokens"
    assert main(["eval", "--model", tiny_dir, "--seqlen", "256", "--eval-tokens", "64"]) == 2
    assert capsys.readouterr().err.strip().endswith("evaluation needs at least one window of 256 tokens, it has 64")
    assert not (tmp_path / "own.jsonl").exists()


def test_gradients_are_cached_from_the_text_named_and_say_its_windows(tiny_dir, tmp_path, monkeypatch, capsys):
    """G's windows are --grad-calib's nsamples alone: the line counted calibration's, which --self-data
    lengthens (it said 5 x 64 of G over 2 x 64). The cached G is the one computed from those windows."""
    import json

    import torch
    from safetensors.torch import load_file

    import gradients
    from pruners import data, models

    monkeypatch.setenv("EVOLVE_CACHE", str(tmp_path / "cache"))
    text, own = tmp_path / "g.txt", tmp_path / "own.jsonl"
    text.write_text(" ".join(f"word{i}" for i in range(400)))
    own.write_text(json.dumps({"text": " ".join(["sample"] * 40)}) + "\n")
    assert main(["gradients", "--model", tiny_dir, "--nsamples", "2", "--seqlen", "16", "--grad-calib", f"text:{text}",
                 "--self-data", str(own), "--self-nsamples", "1"]) == 0
    assert capsys.readouterr().out.startswith("G and F for 14 linears, 2 x 16 tokens: ")
    model, tokenizer = models.load(tiny_dir)
    windows = data.calibration_samples(tokenizer, data.calibration_text(f"text:{text}", "pydoc"), 2, 16, seed=0)
    expected = gradients.compute(model, windows, torch.device("cpu"))
    for leaf in ("G", "F"):
        got = load_file(gradients.cache_path(tiny_dir, windows, torch.float32, leaf))
        assert got.keys() == expected[leaf].keys() and all(torch.allclose(got[k], expected[leaf][k]) for k in got)
    gradients.cache_path(tiny_dir, windows, torch.float32, "F").unlink()  # a cache from before F existed
    assert main(["gradients", "--model", tiny_dir, "--nsamples", "2", "--seqlen", "16", "--grad-calib", f"text:{text}"]) == 0
    got = load_file(gradients.cache_path(tiny_dir, windows, torch.float32, "F"))
    assert all(torch.allclose(got[k], expected["F"][k]) for k in expected["F"])


def test_a_log_gets_lines_not_progress_bars(tmp_path):
    """The GGUF conversion a fresh machine's first run makes drew a bar of 272 carriage-returned steps into
    the log of `make run`, lm-eval a bar per request type; on stderr that is no terminal, the command writes
    its own lines only."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "EVOLVE_CACHE": str(tmp_path)}  # nothing converted yet
    run = subprocess.run([sys.executable, "-m", "evolve.cli", "eval", "--seqlen", "32", "--eval-tokens", "64",
                          "--tasks", "last-word", "--limit", "4"], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and (tmp_path / "models").is_dir(), run.stderr
    assert run.stderr.splitlines() == ["loading smollm2-135m (torch.float32) for cpu"]
