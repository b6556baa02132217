"""Adapt RecBole 1.2.1 to today's numpy, scipy and torch, in one place, without editing RecBole.

RecBole 1.2.1 predates numpy 2, scipy 1.13 and torch 2.6. What breaks, and how it is mended:

1. ``Config.compatibility_settings`` reads ``np.float_``, ``np.complex_`` and ``np.unicode_``
   (removed in numpy 2) and RecBole code still uses ``np.float``, ``np.int``, ``np.bool``...:
   the old names are restored as aliases of their numpy 2 equivalents (only when missing).
2. ``recbole.quick_start`` imports ray at module level (no wheel for Python 3.12, broken on
   numpy 2): this package never imports it and has its own quick start.
3. torch >= 2.6 loads checkpoints with ``weights_only=True`` and RecBole pickles its Config into
   them: our trainers keep the best state in memory (``trainer/best_state.py``) and never load a
   pickled checkpoint.
4. scipy >= 1.13 removed ``dok_matrix._update`` (LightGCN, NGCF, NCL... build their adjacency
   with it): it is restored as a bulk update of the matrix's dictionary.
5. pandas 3 (copy-on-write) silently skips RecBole's in-place ``fillna``: ``setup.py`` requires
   ``pandas<3``.

``apply()`` is idempotent and runs when ``recbole_hetcomp`` is imported.
"""

import warnings

import numpy as np
import scipy.sparse as sp

_NUMPY_ALIASES = {
    "float_": np.float64,
    "complex_": np.complex128,
    "unicode_": np.str_,
    "bool": np.bool_,
    "int": np.int_,
    "float": np.float64,
    "complex": np.complex128,
    "object": np.object_,
    "str": np.str_,
    "long": np.int_,
    "unicode": np.str_,
}

_applied = False


def _missing(module, name):
    # numpy 2 answers some removed names (np.object, np.str) with a FutureWarning: stay quiet.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            getattr(module, name)
        except AttributeError:
            return True
    return False


def _dok_update(self, data):
    # Bulk insert, as scipy < 1.13 did: LightGCN passes {(row, col): 1} for every edge.
    self._dict.update(data)


def apply():
    """Install every adaptation (safe to call more than once)."""
    global _applied
    if _applied:
        return
    for name, alias in _NUMPY_ALIASES.items():
        if _missing(np, name):
            setattr(np, name, alias)
    if not hasattr(sp.dok_matrix, "_update") and hasattr(sp.dok_matrix((1, 1)), "_dict"):
        sp.dok_matrix._update = _dok_update
    _applied = True


apply()
