"""Typed configuration: YAML files in configs/, validated (unknown keys are errors), flags override."""
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from metrics.ops import LEAVES
from pruners.errors import InputError
from pruners.spec import ALLOCATIONS, GROUPS


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(Section):
    name: str = "smollm2-135m"  # the embedded default: needs no network
    dtype: str = "auto"  # float32 on CPU, float16 on accelerators
    device: str = "auto"  # hpu, then cuda, then mps, then cpu


class DataConfig(Section):
    calib: str = "pydoc"  # pydoc, pysource:MOD+..., text:PATH, wikitext2, c4
    eval: str = "pydoc"  # the same offline source is split: head calibrates, tail evaluates
    nsamples: int = Field(128, gt=0)  # calibration windows, as in the Wanda and SparseGPT papers
    seqlen: int | None = Field(None, gt=1)  # None: the model's context, capped at 2048
    seed: int = 0  # calibration sampling seed
    eval_tokens: int | None = Field(None, gt=0)  # None: every full window of the evaluation text
    # the evaluation text's windows that hold its first N tokens are left out: a searched metric is then judged
    # on tokens its search never scored (its fitness_tokens + validation_tokens); other texts are read whole
    eval_skip_tokens: int = Field(0, ge=0)
    batch_size: int = Field(8, gt=0)  # calibration samples per forward pass
    self_data: str | None = None  # JSONL the model wrote itself (evolve generate-data), mixed into calibration
    self_nsamples: int = Field(0, ge=0)  # how many of its samples join the nsamples windows
    # the text G's gradients come from (nsamples windows, same sources as calib); None: the calibration text
    grad_calib: str | None = None


class PruneConfig(Section):
    method: str = "wanda"
    sparsity: float | None = None  # None: 0.5 for the shares; N:M implies 1 - N/M
    pattern: str | None = None  # unstructured, N:M (e.g. 2:4), row-column, channels, blocks; None: the method's default
    blocks: int | None = None  # pattern blocks: decoder blocks to remove
    group: str | None = None  # row, column or layer; None: the method's own default
    allocation: str | None = None  # unstructured: uniform (None) or owl, the blocks' sparsities by their outliers
    permute: bool | None = None  # N:M: each linear's input channels reordered first (RIA's channel permutation)
    options: dict[str, Any] = {}  # the method's own options, checked by the method


class CompareConfig(Section):
    methods: list[str] = ["dense", "magnitude", "wanda"]
    sparsities: list[float] = [0.5]  # the points of the share patterns (unstructured, row-column, channels)
    patterns: list[str] = ["unstructured"]
    blocks: list[int] = []  # the points of pattern blocks
    options: dict[str, dict[str, Any]] = {}  # per method name, e.g. {surgeon: {shots: 2}}
    reconstruct: list[str] = []  # every layer method once per reconstruction (none, lr, br, br+gp, ...)
    allocations: list[str] = []  # every unstructured point once per allocation (uniform, owl); none: each method's own (Pruner.settle)
    permute: bool = False  # every N:M point also with its input channels reordered (RIA's channel permutation)


class EvaluateConfig(Section):
    scores: list[str] = ["perplexity"]  # from evolve.scores.SCORES, measured on every row
    # The tasks score's options, as flags: lm-eval task names (the shipped offline tasks last-word and
    # continuation, or any task lm-eval can reach or has cached); naming any adds the tasks score.
    tasks: list[str] = []
    limit: int | None = Field(None, gt=0)  # examples per task; None: every example
    task_text: str | None = None  # text the shipped tasks are built from; None: data.eval's evaluation split
    options: dict[str, dict[str, Any]] = {}  # other scores' options, per score name


class SearchConfig(Section):
    generations: int = Field(8, ge=0)
    population: int = Field(16, ge=2)
    seed: int = 0  # the evolution's random seed (calibration sampling has data.seed)
    crossover: float = Field(0.6, ge=0, le=1)  # probability per pair of offspring
    mutation: float = Field(0.3, ge=0, le=1)  # probability per offspring
    tournament: int = Field(3, ge=1)
    elites: int = Field(2, ge=0)  # best individuals copied unchanged into the next generation
    init_min_height: int = Field(1, ge=0)
    init_max_height: int = Field(3, ge=0)
    max_height: int = Field(6, ge=1)  # DEAP's static limit against bloat
    # The fitness points: each sparsity unstructured per output row, and each N:M pattern. A metric fitted to
    # one point can lose at the next (Pruner-Zero's did), so the default asks for three.
    sparsities: list[float] = [0.5, 0.6]
    patterns: list[str] = ["unstructured", "2:4"]
    fitness_tokens: int = Field(2048, gt=0)  # from the evaluation split: never seen by calibration
    # The next tokens of the evaluation split, disjoint from the fitness tokens: the `validate_top` best by
    # fitness are scored again there, and best_metric.json is the best by validation. 0: no validation.
    validation_tokens: int = Field(4096, ge=0)
    validate_top: int = Field(10, ge=1)
    early_stop: float = Field(3.0, ge=0)  # stop a candidate whose first windows exceed this times the best; 0: never
    early_windows: int = Field(1, ge=1)
    recalibrate: bool = False  # True: X gathered block by block from the pruned model per candidate (slow)
    seed_metrics: list[str] = []  # named metrics or expressions placed in generation 0 (none: from scratch)
    # the search space: "pruner-zero" (its primitives exactly, to reproduce its search) or "evolve" (ours:
    # also divrow and divcol, the row and column reductions that RIA needs)
    language: Literal["pruner-zero", "evolve"] = "pruner-zero"
    # the statistics the trees read (metrics.ops.LEAVES); D, SparseGPT's inverse Hessian diagonal, is a switch
    leaves: list[str] = ["W", "X", "G"]
    # where an unstructured point's scores compete: per output row (Wanda's), per input column, or over a whole
    # layer (SparseGPT's block, magnitude's in its paper); best_metric.json names it and `evolve apply` prunes by it.
    # A comma list ("row,layer") makes it a gene: each individual carries one of them, and mutation may change it
    group: str = "row"
    # an unstructured point's sparsity per block: the same in every block, or OWL's (by their outlier scores);
    # a comma list ("uniform,owl") makes it a gene, as the group
    allocation: str = "uniform"
    # more calibration draws (data.seed is the first): every point is scored once per draw, X and G per draw,
    # so that no metric wins by one draw of calibration text; each draw multiplies the cost of a candidate
    calib_seeds: list[int] = []
    # more texts every point is scored on (text:PATH, pydoc, pysource:MOD+..., wikitext2, c4), each cut into
    # fitness and validation tokens as data.eval is; the fitness is the geometric mean over texts and points, so
    # that a metric fitted to one domain loses on another (each text multiplies the evaluation cost of a
    # candidate, not its pruning)
    texts: list[str] = []
    # a metric (named or written out) the fitness is measured against: the worst perplexity ratio to it over
    # points and texts (each pair's ratios over calibration draws by geometric mean), so that a candidate must
    # beat it at every point on every text, not win one by enough to hide a loss at another;
    # "": the geometric mean of all the perplexities
    against: str = ""
    # the N:M points' masks chosen after each linear's input channels are reordered (RIA's channel permutation)
    permute: bool = False
    # an update in the fitness, after the candidate's mask: each linear's kept weights refitted on its dense
    # Hessian, "lr" exactly (least squares per row) or "obs" by SparseGPT's sweep (20-50x cheaper on a CPU),
    # so that the search looks for the mask that is best after an update
    update: Literal["none", "lr", "obs"] = "none"
    workers: int = Field(1, ge=1)
    ray_address: str | None = None  # None: a local Ray instance; "auto" or host:port joins a cluster
    serial: bool = False  # evaluate in this process, without Ray
    timeout_s: float = Field(1800, gt=0)  # per candidate, on Ray

    @model_validator(mode="after")
    def _consistent(self):
        if self.generations and self.elites >= self.population:
            raise ValueError(f"{self.elites} elites (search.elites) of a population of {self.population} leave no room "
                             "for offspring: the generations would change nothing")
        if len(set(self.seed_metrics)) > self.population:  # generation 0 would drop the last ones silently
            raise ValueError(f"{len(set(self.seed_metrics))} seed metrics (search.seed_metrics) do not fit a population "
                             f"of {self.population}")
        # the initial trees' heights lie in [init_min_height, init_max_height], within max_height
        if not self.init_min_height <= self.init_max_height <= self.max_height:
            raise ValueError(f"tree heights must keep init_min_height ({self.init_min_height}) <= init_max_height "
                             f"({self.init_max_height}) <= max_height ({self.max_height})")
        return self

    @field_validator("group", "allocation")
    @classmethod
    def _known_values(cls, text, info):
        known, what = {"group": (GROUPS, "comparison group"), "allocation": (ALLOCATIONS, "allocation")}[info.field_name]
        values = list(dict.fromkeys(v.strip() for v in text.split(",")))
        unknown = [v for v in values if v not in known]
        if unknown:
            raise ValueError(f"unknown {what} {', '.join(unknown)}; choose among {', '.join(known)}")
        return ",".join(values)

    @field_validator("leaves")
    @classmethod
    def _known_leaves(cls, leaves):
        unknown = [leaf for leaf in leaves if leaf not in LEAVES]
        if unknown:
            raise ValueError(f"unknown leaves {', '.join(unknown)}; the language has {', '.join(LEAVES)}")
        if not any(LEAVES[leaf].per == "weight" for leaf in leaves):
            raise ValueError("no leaf per weight (W or G): every tree would rank each row alike")
        return list(dict.fromkeys(leaves))


class Config(Section):
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    prune: PruneConfig = PruneConfig()
    compare: CompareConfig = CompareConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    search: SearchConfig = SearchConfig()
    save: str | None = None  # folder for the pruned model and its report
    force: bool = False  # overwrite a non-empty save folder


def _describe(error: ValidationError, origin: str) -> str:
    problem = error.errors()[0]
    where = ".".join(str(p) for p in problem["loc"])
    if problem["type"] == "extra_forbidden":
        return f"{origin}: unknown key {where!r}"
    return f"{origin}: {where}: {problem['msg'].removeprefix('Value error, ')}"


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
