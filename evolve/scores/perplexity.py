from typing import ClassVar

from evolve.perplexity import perplexity
from evolve.scores import Score
from pruners import data
from pruners.errors import InputError


class Perplexity(Score):
    """exp(total NLL / predicted tokens) over the host's non-overlapping evaluation windows, as the Wanda
    and SparseGPT papers measure it.

    `texts` adds the same measurement on other sources' evaluation text, a column each ("perplexity
    legal"), so one pruning is judged on the text it was calibrated on and on text of other domains.

        scores: [perplexity]
        options: {perplexity: {texts: [text:/data/legal.txt]}}
    """

    name: ClassVar[str] = "perplexity"
    texts: list[str] = []  # pydoc, pysource:MOD+..., text:PATH, wikitext2, c4

    def check(self) -> None:
        labels = [data.short_name(source) for source in self.texts]
        if len(set(labels)) < len(labels):
            raise InputError(f"perplexity texts need distinct names, got {', '.join(labels)}")
        for source in self.texts:
            data.readable(source)

    def prepare(self, host) -> None:
        for source in self.texts:
            host.windows_of(source)

    def evaluate(self, host) -> dict[str, float]:
        host.place()
        values = {"perplexity": perplexity(host.model, host.windows, host.device)}
        for source in self.texts:
            values[f"perplexity {data.short_name(source)}"] = perplexity(host.model, host.windows_of(source), host.device)
        return values

    def lower_is_better(self, column: str) -> bool:
        return column.startswith("perplexity")
