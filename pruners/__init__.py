"""The shared pruning backend. A method is one file and one line in METHODS ("module:Class", loaded lazily)."""
import importlib

from pruners.errors import InputError

METHODS = {
    "dense": "pruners.dense:Dense",
    "magnitude": "pruners.magnitude:Magnitude",
    "wanda": "pruners.wanda:Wanda",
    "sparsegpt": "pruners.sparsegpt:SparseGPT",
    "surgeon": "pruners.surgeon:Surgeon",
    "layer-drop": "pruners.layerdrop:LayerDrop",
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


def method(name: str, **options):
    """A configured method; unknown or ill-typed options are an InputError that names them."""
    from pydantic import ValidationError

    if name.startswith("metric:"):
        name, options = "metric", {**options, "metric": name[len("metric:"):]}
    cls = method_class(name)
    try:
        return cls(**options)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise InputError(f"method {name}: option {where}: {problem['msg']}") from None
