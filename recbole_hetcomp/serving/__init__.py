"""Serving the distilled model: packages, ``Recommender``, its CLI and HTTP endpoint, and
what a model costs to serve.

    from recbole_hetcomp.serving import Recommender
    rec = Recommender.load("saved/HetCompStudent-ml-100k-20261202-101500")
    rec.recommend(["196", "42"], k=10)        # per user: [(item token, score), ...]

The names below are imported on first use (PEP 562), so that ``hetcomp-recommend`` and
``hetcomp-serve`` can answer ``--help`` or a usage mistake, and treat Ctrl-C, before torch loads.
"""

import importlib

#: public name -> the module of this package that defines it
_HOMES = {
    "Recommender": "recommender",
    "Recommendations": "recommender",
    "PackageError": "package",
    "read_card": "package",
    "load_data_and_model": "rebuild",
    "inference_ms_per_1000_users": "cost",
    "parameter_count": "cost",
}

__all__ = list(_HOMES)


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_HOMES))
