"""The shared pruning backend. A method is one file and one line in METHODS ("module:Class", loaded lazily)."""
import importlib
import re

from pruners.errors import InputError

METHODS = {
    "dense": "pruners.dense:Dense",
    "magnitude": "pruners.magnitude:Magnitude",
    "wanda": "pruners.wanda:Wanda",
    "sparsegpt": "pruners.sparsegpt:SparseGPT",
    "surgeon": "pruners.surgeon:Surgeon",
    "layer-drop": "pruners.layerdrop:LayerDrop",
    "channels": "pruners.channels:Channels",
    "metric": "pruners.symbolic:Metric",  # also spelled metric:NAME|FILE|EXPRESSION
}


def method_class(name: str):
    if name not in METHODS:
        from metrics.named import NAMED

        if name in NAMED:
            raise InputError(f"{name!r} is a metric: use metric:{name}")
        raise InputError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def inline_options(text: str) -> dict:
    """The options written after a method's name: 'criterion=cosine, skip=[0, -1]' (YAML values)."""
    import yaml

    try:
        options = yaml.safe_load("{" + re.sub(r"(\w+)\s*=", r"\1: ", text) + "}")
    except yaml.YAMLError:
        options = None
    if not isinstance(options, dict):
        raise InputError(f"cannot read method options ({text}); write them as name(key=value, ...)")
    return options


def method(name: str, **options):
    """A configured method; unknown or ill-typed options are an InputError that names them. The name may
    carry options, 'layer-drop(criterion=cosine, tokens=all)', which win over `options`."""
    from pydantic import ValidationError

    if name.startswith("metric:"):
        name, options = "metric", {**options, "metric": name[len("metric:"):]}
    elif match := re.fullmatch(r"([\w-]+)\((.*)\)", name.strip()):
        name, options = match[1], {**options, **inline_options(match[2])}
    cls = method_class(name)
    try:
        return cls(**options)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise InputError(f"method {name}: option {where}: {problem['msg']}") from None
