import random

import pytest
import torch

from pruners import data
from pruners.errors import InputError


class CharTokenizer:
    """One token per character: enough to check sampling and splitting exactly."""

    def __call__(self, text, return_tensors="pt", add_special_tokens=True):
        ids = [ord(c) for c in text]
        from types import SimpleNamespace

        return SimpleNamespace(input_ids=torch.tensor([ids]))


def test_calibration_samples_follow_the_wanda_loader():
    text = "".join(chr(65 + i % 26) for i in range(500))
    got = data.calibration_samples(CharTokenizer(), text, nsamples=4, seqlen=16, seed=3)
    random.seed(3)
    ids = [ord(c) for c in text]
    for row in got.tolist():
        i = random.randint(0, len(ids) - 16 - 1)
        assert row == ids[i : i + 16]


def test_same_offline_source_is_split_without_overlap(tmp_path):
    paragraphs = [f"paragraph {i} " + "x" * 50 for i in range(40)]
    path = tmp_path / "t.txt"
    path.write_text("\n\n".join(paragraphs))
    calib, evaluation = data.texts(f"text:{path}", f"text:{path}")
    assert calib + "\n\n" + evaluation == path.read_text()
    assert 0.2 < len(evaluation) / len(path.read_text()) < 0.3
    assert not set(calib.split("\n\n")) & set(evaluation.split("\n\n"))


def test_different_sources_are_whole(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "b.txt").write_text("beta")
    calib, evaluation = data.texts(f"text:{tmp_path}", "pydoc")
    assert calib == "alpha\n\nbeta"
    assert evaluation == data.pydoc_text()


def test_a_jsonl_file_is_read_as_its_text_fields(tmp_path):
    """What generate-data writes, given as text:PATH, was read raw: its JSON and token ids calibrated."""
    path = tmp_path / "own.jsonl"
    path.write_text('{"text": "first \\"sample\\"", "ids": [1, 2]}\n\n{"text": "second"}\n')
    assert data.file_text(str(path)) == 'first "sample"\n\nsecond'
    path.write_text('{"text": "first"}\n{"ids": [1, 2]}\n')
    with pytest.raises(InputError, match=r"own.jsonl line 2 is not a JSON object with a 'text'"):
        data.readable(f"text:{path}")


def test_one_split_reads_only_its_own_source(tmp_path, monkeypatch):
    path = tmp_path / "t.txt"
    path.write_text("\n\n".join(f"paragraph {i}" for i in range(40)))
    shared = data.texts(f"text:{path}", f"text:{path}")
    assert data.calibration_text(f"text:{path}", f"text:{path}") == shared[0]
    assert data.evaluation_text(f"text:{path}", f"text:{path}") == shared[1]
    read = []
    monkeypatch.setattr(data, "hub_text", lambda source, split: read.append((source, split)) or source)
    monkeypatch.setattr(data, "pydoc_text", lambda: read.append("pydoc") or "pydoc")
    # G's text beside c4's evaluation split, and an extra evaluation text beside c4 calibration
    assert data.calibration_text(f"text:{path}", "c4") == path.read_text()
    assert data.evaluation_text("pydoc", "c4") == "pydoc"
    assert data.calibration_text("c4", "pydoc") == "c4"
    assert read == ["pydoc", ("c4", "calibration")]


def test_pydoc_is_the_sorted_topics_joined():
    from pydoc_data.topics import topics

    assert data.pydoc_text() == "\n\n".join(topics[k] for k in sorted(topics))


def test_pysource_is_the_named_modules_source_in_the_order_named():
    import csv
    import json.decoder
    from pathlib import Path

    files = [Path(m.__file__).read_text(encoding="utf-8") for m in (json.decoder, csv)]
    assert data.evaluation_text("pysource:json.decoder+csv", "pydoc") == "\n\n".join(files)
    assert data.short_name("pysource:json.decoder+csv") == "pysource"
    head, tail = data.texts("pysource:csv", "pysource:csv")  # shared, so split as any offline source
    assert head + "\n\n" + tail == files[1]


@pytest.mark.parametrize("source", ["pysource:sys", "pysource:no_such_module", "pysource:csv+", "pysource:"])
def test_pysource_without_a_source_file_is_refused_in_one_line(source):
    with pytest.raises(InputError, match="pysource"):
        data.readable(source)


@pytest.mark.e2e  # the datasets library giving up offline: 20 s
def test_hub_sources_fail_with_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(InputError, match="wikitext2"):
        data.texts("wikitext2", "pydoc")


def test_too_short_calibration_text():
    with pytest.raises(InputError, match="not enough for windows of 64"):
        data.calibration_samples(CharTokenizer(), "short", 2, 64, 0)
