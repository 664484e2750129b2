"""Self-generated calibration data: deterministic per seed, mixed into calibration exactly, bad files refused."""
import json

import pytest
import torch

from evolve.cli import main
from evolve.host import Host
from pruners import data, models

CPU = torch.device("cpu")


def test_generated_samples_repeat_for_a_seed_and_differ_for_another(tiny_dir):
    model, tokenizer = models.load(tiny_dir)
    one = list(data.generate_self_data(model, tokenizer, 2, 12, seed=0, device=CPU))
    assert one == list(data.generate_self_data(model, tokenizer, 2, 12, seed=0, device=CPU))
    other = list(data.generate_self_data(model, tokenizer, 2, 12, seed=1, device=CPU))
    assert [s["ids"] for s in one] != [s["ids"] for s in other]
    assert [len(s["ids"]) for s in one] == [12, 12] and one[0]["ids"] != one[1]["ids"]
    assert all(s["text"] == tokenizer.decode(s["ids"], skip_special_tokens=True) for s in one)
    # greedy for the first five tokens: the first token fixes them
    first = torch.tensor([[one[0]["ids"][0]]])
    assert model.generate(first, do_sample=False, max_length=5, pad_token_id=tokenizer.eos_token_id)[0].tolist() == one[0]["ids"][:5]


def test_generate_data_command_and_mixing_into_calibration(tiny_dir, tmp_path, capsys):
    out = tmp_path / "self.jsonl"
    args = ["generate-data", "--model", tiny_dir, "--nsamples", "3", "--seqlen", "16", "--out", str(out)]
    assert main(args) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3 and all(len(s["ids"]) == 16 for s in lines)
    assert main(args) == 2 and "exists; pass --force" in capsys.readouterr().err
    quiet = dict(calib="pydoc", eval="pydoc", nsamples=2, seqlen=16, eval_tokens=64, log=lambda m: None)
    host = Host(tiny_dir, self_data=str(out), self_nsamples=2, **quiet)
    plain = Host(tiny_dir, **quiet)
    assert host.calibration.shape == (4, 16)
    assert torch.equal(host.calibration[:2], plain.calibration)
    assert host.calibration[2:].tolist() == [lines[0]["ids"], lines[1]["ids"]]


def test_a_killed_generate_data_keeps_its_samples(tiny_dir, tmp_path, monkeypatch, capsys):
    whole, out = tmp_path / "whole.jsonl", tmp_path / "self.jsonl"
    args = ["generate-data", "--model", tiny_dir, "--nsamples", "3", "--seqlen", "16", "--out"]
    assert main(args + [str(whole)]) == 0
    generate = data.generate_self_data

    def killed_after_one(*a, **k):
        yield next(generate(*a, **k))
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "generate_self_data", killed_after_one)
    assert main(args + [str(out)]) == 130 and not out.exists()
    [partial] = tmp_path.glob("self.jsonl.*.partial")
    with partial.open("a") as file:
        file.write('{"text": "torn')  # a kill while writing the second sample
    monkeypatch.setattr(data, "generate_self_data", generate)
    capsys.readouterr()
    assert main(args + [str(out)]) == 0
    assert f"1 kept from {partial}" in capsys.readouterr().err
    assert out.read_text() == whole.read_text() and not partial.exists()


def test_text_only_lines_are_tokenized(tiny_dir, tmp_path):
    _, tokenizer = models.load(tiny_dir)
    path = tmp_path / "theirs.jsonl"
    text = "The license grants every user the same rights to read, change and share the program. " * 4
    path.write_text(json.dumps({"text": text}) + "\n")
    got = data.self_samples(tokenizer, data.read_self_data(str(path), 1), 10)
    assert got[0].tolist() == tokenizer(text, add_special_tokens=False).input_ids[:10]


@pytest.mark.parametrize("content, flags, message", [
    (None, ["--self-nsamples", "1"], "cannot read self-data"),
    ('{"text": "a b c"}\nnot json\n', ["--self-nsamples", "2"], "line 2 is not a JSON object"),
    ('{"ids": [1, 2, 3, 4]}\n', ["--self-nsamples", "2"], "--self-nsamples 2 is more than the 1 samples"),
    ('{"ids": [1, 2, 3]}\n', ["--self-nsamples", "1"], "line 1 has 3 tokens, fewer than seqlen 8"),  # known after loading
    ('{"ids": [1, 2, 3, 4]}\n', [], "--self-data FILE and --self-nsamples N go together"),
])
def test_bad_self_data_is_one_line(content, flags, message, tiny_dir, tmp_path, capsys):
    path = tmp_path / "self.jsonl"
    if content is not None:
        path.write_text(content)
    code = main(["baseline", "--model", tiny_dir, "--nsamples", "2", "--seqlen", "8", "--eval-tokens", "64",
                 "--self-data", str(path), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1] and err[-1].startswith("evolve: error:")
    assert len(err) == 1 or "fewer than seqlen" in message  # the file is checked before any model loads
