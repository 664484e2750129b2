"""Typed configuration: YAML files in configs/, validated (unknown keys are errors), flags override."""
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pruners.errors import InputError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(Section):
    name: str = "smollm2-135m"  # the embedded default: needs no network
    dtype: str = "auto"  # float32 on CPU, float16 on accelerators
    device: str = "auto"  # hpu, then cuda, then mps, then cpu


class DataConfig(Section):
    calib: str = "pydoc"  # pydoc, text:PATH, wikitext2, c4
    eval: str = "pydoc"  # the same offline source is split: head calibrates, tail evaluates
    nsamples: int = Field(128, gt=0)  # calibration windows, as in the Wanda and SparseGPT papers
    seqlen: int | None = Field(None, gt=1)  # None: the model's context, capped at 2048
    seed: int = 0  # calibration sampling seed
    eval_tokens: int | None = Field(None, gt=0)  # None: every full window of the evaluation text
    batch_size: int = Field(8, gt=0)  # calibration samples per forward pass


class PruneConfig(Section):
    method: str = "wanda"
    sparsity: float | None = None  # None: 0.5 unstructured; N:M implies 1 - N/M
    pattern: str = "unstructured"  # or N:M, e.g. 2:4
    group: str | None = None  # row or layer; None: the method's own default
    options: dict[str, Any] = {}  # the method's own options, checked by the method


class CompareConfig(Section):
    methods: list[str] = ["dense", "magnitude", "wanda"]
    sparsities: list[float] = [0.5]
    patterns: list[str] = ["unstructured"]


class Config(Section):
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    prune: PruneConfig = PruneConfig()
    compare: CompareConfig = CompareConfig()
    save: str | None = None  # folder for the pruned model and its report
    force: bool = False  # overwrite a non-empty save folder


def _describe(error: ValidationError, origin: str) -> str:
    problem = error.errors()[0]
    where = ".".join(str(p) for p in problem["loc"])
    if problem["type"] == "extra_forbidden":
        return f"{origin}: unknown key {where!r}"
    return f"{origin}: {where}: {problem['msg']}"


def load(path: str | None, overrides: dict[str, Any]) -> Config:
    """The file's values (if any), then each non-None override, keyed by dotted path ('data.nsamples')."""
    raw: dict[str, Any] = {}
    if path:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as error:
            raise InputError(f"cannot read config {path}: {error.strerror}") from None
        except yaml.YAMLError as error:
            raise InputError(f"config {path} is not valid YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise InputError(f"config {path} must be a mapping of sections")
    try:
        Config.model_validate(raw)
    except ValidationError as error:
        raise InputError(_describe(error, f"config {path}")) from None
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        raise InputError(_describe(error, "option")) from None
