"""recbole-hetcomp: distil a heterogeneous recommender ensemble into one small model (HetComp).

A RecBole 1.2 plugin. Importing the package installs the compatibility shims that RecBole 1.2.1
needs on numpy 2, scipy >= 1.13 and torch >= 2.6 (see ``compat.py``).
"""

try:
    import recbole  # noqa: F401
except ImportError as exc:  # pragma: no cover - an install mistake, not a code path
    raise ImportError("recbole-hetcomp needs RecBole 1.2.1, installed without its ray/plotly "
                      "extras: pip install --no-deps recbole==1.2.1") from exc

from recbole_hetcomp import compat  # noqa: F401  (must run before RecBole is used)

__version__ = "0.1.0"
