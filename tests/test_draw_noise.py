"""benchmarks/draw_noise.py's tables from rows another run printed (--reuse): no model loads when every row
is read, so these run in seconds."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METRIC = "metric:mul(mul(sqr(W), X), abs(log(X)))"  # a method name holding ', '


def draw_noise(*argv):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "draw_noise.py"), "--batch-sizes", "8", "--points", "0.5",
                           *argv], capture_output=True, text=True, cwd=ROOT)


def write(path, rows):
    path.write_text("loading smollm2-135m (torch.float32) for cpu\n" + "".join(f"{r}\n" for r in rows))
    return str(path)


def test_two_logs_make_the_table_of_both_without_a_model(tmp_path):
    wanda = write(tmp_path / "wanda.log", [
        "seed 0, batch 8, 50%, wanda: perplexity 20.000, perplexity licenses 40.000",
        "seed 1, batch 8, 50%, wanda: perplexity 25.000, perplexity licenses 50.000",
        "seed 0, batch 8, 60%, wanda: perplexity 99.000, perplexity licenses 99.000",  # another point: not read
    ])
    metric = write(tmp_path / "metric.log", [
        "F read: /root/.cache/evolve/gradients/x-F.safetensors",
        f"seed 0, batch 8, 50%, {METRIC}: perplexity 19.000, perplexity licenses 42.000",
        f"seed 1, batch 8, 50%, {METRIC}: perplexity 26.000, perplexity licenses 45.000",
    ])
    done = draw_noise("--seeds", "0,1", "--methods", f"wanda;{METRIC}", "--reuse", wanda, "--reuse", metric)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["seed 0: 2 rows reused", "seed 1: 2 rows reused"]
    assert "loading" not in done.stdout
    assert lines[-2] == ("| wanda | 20.00 / 25.00 | 40.00 / 50.00 | +0.0% / +0.0% (mean +0.0%) "
                         "| +0.0% / +0.0% (mean +0.0%) |")
    # 19/20 - 1, 26/25 - 1; 42/40 - 1, 45/50 - 1
    assert lines[-1] == (f"| {METRIC} | 19.00 / 26.00 | 42.00 / 45.00 | -5.0% / +4.0% (mean -0.5%) "
                         "| +5.0% / -10.0% (mean -2.5%) |")


def test_a_reused_log_of_other_texts_is_a_one_line_error(tmp_path):
    log = write(tmp_path / "rows.log", [
        "seed 0, batch 8, 50%, wanda: perplexity 20.000, perplexity licenses 40.000",
        "seed 0, batch 8, 50%, sparsegpt: perplexity 15.000",
    ])
    done = draw_noise("--methods", "wanda;sparsegpt", "--reuse", log)
    assert done.returncode == 1
    assert done.stderr.strip() == ("draw_noise.py: sparsegpt's row at 50%, seed 0 batch 8 has no perplexity licenses: "
                                   "a reused log scored other texts")


def test_a_log_that_is_missing_or_holds_no_rows_is_refused_before_anything_runs(tmp_path):
    for log, message in [(str(tmp_path / "none.log"), "cannot read"),
                         (write(tmp_path / "empty.log", ["wanda at 2:4"]), "holds no rows of draw_noise.py")]:
        done = draw_noise("--reuse", log)
        assert done.returncode == 2
        assert message in done.stderr.splitlines()[-1]
