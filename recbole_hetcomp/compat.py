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
6. ``Collector.get_data_struct`` calls ``.cpu()`` on every collected value, but the training
   data's item count (an int) and item counter (a dict) are not tensors: any non-accuracy
   metric (``ItemCoverage``, ``AveragePopularity``, ``TailPercentage``...) crashes the
   evaluation. Only tensors are moved now.
7. ``TailPercentage.get_tail`` tests every recommended item against a Python list of tail items
   (users x k x tail comparisons: minutes per evaluation on CiteULike) and
   ``AveragePopularity.get_pop`` looks items up one by one: both are replaced by the same
   arithmetic on arrays (``tests/test_compat.py`` checks them against RecBole's own).
8. RecBole's own calls of deprecated pandas and torch APIs warn at every run, in a dozen lines
   no user can act on (pandas' chained-assignment ``fillna``, moot with ``pandas<3``;
   ``torch.cuda.amp.GradScaler``; LightGCN's ``torch.sparse.FloatTensor``): those FutureWarnings
   and that one UserWarning are ignored when they come from RecBole's modules, and only there.

``apply()`` is idempotent. Importing ``recbole_hetcomp`` calls ``install()``, which runs it at
once if RecBole is already imported and otherwise right after RecBole's first import, by anyone.
So code that never touches RecBole (serving a model package, ``hetcomp-recommend``) does not pay
the ~2.5 s of importing it, and RecBole is never seen unmended.
"""

import importlib.abc
import importlib.util
import sys
import warnings

import numpy as np

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

#: RecBole's own functions that ``apply()`` replaced, by "Class.method" (tests compare them).
REPLACED = {}


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


def _get_data_struct(self):
    # RecBole's own body, moving only the values that are tensors to the CPU.
    import copy

    import torch

    for key, value in self.data_struct._data_dict.items():
        if isinstance(value, torch.Tensor):
            self.data_struct._data_dict[key] = value.cpu()
    returned = copy.deepcopy(self.data_struct)
    for key in ["rec.topk", "rec.meanrank", "rec.score", "rec.items", "data.label"]:
        if key in self.data_struct:
            del self.data_struct[key]
    return returned


def _lookup_table(count_items, item_matrix):
    # (max id + 1,) array: count of each item id, 0 for ids never counted.
    size = max([int(item_matrix.max()) if item_matrix.size else 0]
               + [int(i) for i in count_items]) + 1
    table = np.zeros(size, dtype=np.int64)
    for item, count in count_items.items():
        table[int(item)] = count
    return table


def _get_pop(self, item_matrix, item_count):
    return _lookup_table(item_count, item_matrix)[item_matrix].astype(item_matrix.dtype)


def _get_tail(self, item_matrix, count_items):
    if self.tail > 1:
        tail_items = [item for item, cnt in count_items.items() if cnt <= self.tail]
    else:
        ranked = sorted(count_items.items(), key=lambda kv: (kv[1], kv[0]))
        tail_items = [item for item, _ in ranked[:max(int(len(ranked) * self.tail), 1)]]
    return np.isin(item_matrix, np.asarray(tail_items, dtype=np.int64)).astype(item_matrix.dtype)


def quiet_recbole_deprecations():
    """Point 8: ignore the deprecation noise that RecBole's own modules raise, nobody else's."""
    for category, message in ((FutureWarning, ""),
                              (UserWarning, r"torch\.sparse\.SparseTensor")):
        warnings.filterwarnings("ignore", message=message, category=category,
                                module=r"recbole\.")


def apply():
    """Install every adaptation (safe to call more than once)."""
    global _applied
    if _applied:
        return
    import scipy.sparse as sp

    for name, alias in _NUMPY_ALIASES.items():
        if _missing(np, name):
            setattr(np, name, alias)
    if not hasattr(sp.dok_matrix, "_update") and hasattr(sp.dok_matrix((1, 1)), "_dict"):
        sp.dok_matrix._update = _dok_update
    quiet_recbole_deprecations()
    from recbole.evaluator.collector import Collector

    from recbole.evaluator import metrics

    for owner, name, new in ((Collector, "get_data_struct", _get_data_struct),
                             (metrics.AveragePopularity, "get_pop", _get_pop),
                             (metrics.TailPercentage, "get_tail", _get_tail)):
        REPLACED[f"{owner.__name__}.{name}"] = getattr(owner, name)
        setattr(owner, name, new)
    _applied = True


class _ApplyAfterRecBoleImport(importlib.abc.MetaPathFinder):
    """Finds ``recbole`` with the other finders, then runs ``apply()`` once it has executed.

    RecBole's own ``__init__`` only sets ``__version__``, so nothing of RecBole runs unmended:
    every module that reads the old numpy names is imported after ``apply()`` set them.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "recbole":
            return None
        sys.meta_path.remove(self)  # once: the real finders locate recbole below
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            execute = spec.loader.exec_module

            def execute_then_apply(module):
                execute(module)
                apply()

            spec.loader.exec_module = execute_then_apply
        return spec


def install():
    """Mend RecBole now if it is imported, else as soon as it is (idempotent)."""
    if "recbole" in sys.modules:
        apply()
    elif not any(isinstance(f, _ApplyAfterRecBoleImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _ApplyAfterRecBoleImport())
