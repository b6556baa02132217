"""recbole-hetcomp: distil a heterogeneous recommender ensemble into one small model (HetComp).

A RecBole 1.2 plugin. Importing the package installs the compatibility shims that RecBole 1.2.1
needs on numpy 2, scipy >= 1.13 and torch >= 2.6 (see ``compat.py``): at once if RecBole is
already imported, else when it first is, so serving a model package never imports RecBole.
"""

import importlib.util

if importlib.util.find_spec("recbole") is None:  # pragma: no cover - an install mistake
    raise ImportError("recbole-hetcomp needs RecBole 1.2.1, installed without its ray/plotly "
                      "extras: pip install --no-deps recbole==1.2.1")

from recbole_hetcomp import compat  # noqa: E402

compat.install()

__version__ = "0.1.0"
