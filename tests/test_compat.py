"""compat.py's replacements of RecBole's evaluator pieces give RecBole's own answers."""

import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import pytest
import torch

from recbole_hetcomp import compat
from recbole.evaluator import metrics


def _counts(rng, n_items):
    # Item 0 (padding) is never counted; some items never occur in training.
    return Counter({int(i): int(c) for i, c in enumerate(rng.integers(0, 30, n_items)) if i and c})


@pytest.mark.parametrize("tail", [0.1, 0.5, 3])
def test_tail_percentage_matches_recbole(tail):
    rng = np.random.default_rng(0)
    items = rng.integers(1, 200, size=(40, 20))
    counts = _counts(rng, 200)
    metric = metrics.TailPercentage({"topk": [5, 20], "tail_ratio": tail, "metric_decimal_place": 4})
    expected = compat.REPLACED["TailPercentage.get_tail"](metric, items, counts)
    got = metric.get_tail(items, counts)
    assert got.dtype == expected.dtype and expected.sum() > 0
    np.testing.assert_array_equal(got, expected)


def test_average_popularity_matches_recbole():
    rng = np.random.default_rng(1)
    items = rng.integers(1, 300, size=(40, 20))  # ids beyond the counted ones count 0
    counts = _counts(rng, 250)
    metric = metrics.AveragePopularity({"topk": [5, 20], "metric_decimal_place": 4})
    expected = compat.REPLACED["AveragePopularity.get_pop"](metric, items, counts)
    np.testing.assert_array_equal(metric.get_pop(items, counts), expected)


def test_collector_keeps_non_tensor_data():
    from recbole.evaluator.collector import Collector

    collector = Collector.__new__(Collector)
    from recbole.evaluator.collector import DataStruct

    collector.data_struct = DataStruct()
    collector.data_struct.set("data.num_items", 7)
    collector.data_struct.set("data.count_items", Counter({1: 2}))
    collector.data_struct.set("rec.items", torch.ones(2, 3))
    struct = collector.get_data_struct()
    assert struct.get("data.num_items") == 7 and struct.get("data.count_items") == {1: 2}
    assert "rec.items" not in collector.data_struct  # reset for the next evaluation, as RecBole does
    with pytest.raises(AttributeError):  # what RecBole 1.2.1 itself does with these values
        compat.REPLACED["Collector.get_data_struct"](collector_with_int())


def collector_with_int():
    from recbole.evaluator.collector import Collector, DataStruct

    collector = Collector.__new__(Collector)
    collector.data_struct = DataStruct()
    collector.data_struct.set("data.num_items", 7)
    return collector


def _fresh_python(code):
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, check=True)
    return done.stdout.split()


def test_recbole_imported_after_the_package_is_mended_on_its_first_import():
    # Importing recbole_hetcomp no longer imports RecBole; the hook must mend it when anyone
    # (here a user's own `from recbole.config import Config`) imports it later.
    printed = _fresh_python("""
        import sys
        import recbole_hetcomp
        print("recbole" in sys.modules)
        from recbole.evaluator.collector import Collector
        from recbole.evaluator import metrics
        import numpy as np
        from recbole_hetcomp import compat
        import warnings
        quiet = any(f[3] is not None and f[3].pattern == r"recbole\." for f in warnings.filters)
        print(Collector.get_data_struct is compat._get_data_struct,
              metrics.TailPercentage.get_tail is compat._get_tail, np.float_ is np.float64, quiet)
    """)
    assert printed == ["False", "True", "True", "True", "True"]


def test_recbole_imported_before_the_package_is_mended_at_once():
    printed = _fresh_python("""
        import recbole.evaluator.collector as collector
        import recbole_hetcomp
        from recbole_hetcomp import compat
        print(collector.Collector.get_data_struct is compat._get_data_struct)
    """)
    assert printed == ["True"]


def test_the_serving_clis_import_neither_torch_nor_recbole_before_their_main_runs():
    # Everything heavy is imported inside recommend_main / serve_main, where Ctrl-C is caught
    # (exit 130, no traceback) and --help answers at once.
    printed = _fresh_python("""
        import sys
        import recbole_hetcomp.serving.cli
        print(sorted(m for m in ("torch", "recbole", "scipy") if m in sys.modules) or "none")
    """)
    assert printed == ["none"]


def test_recboles_deprecation_warnings_are_quiet_and_only_recboles():
    import warnings

    def shown(category, message, module):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # not pytest.ini's filters: compat's alone
            compat.quiet_recbole_deprecations()
            warnings.warn_explicit(message, category, "x.py", 1, module=module)
        return len(caught)

    pandas_note = "A value is trying to be set on a copy of a DataFrame or Series"
    sparse_note = "torch.sparse.SparseTensor(indices, values, shape) is deprecated"
    assert shown(FutureWarning, pandas_note, "recbole.data.dataset.dataset") == 0
    assert shown(UserWarning, sparse_note, "recbole.model.general_recommender.lightgcn") == 0
    # the user's own code, and RecBole's other warnings, still warn
    assert shown(FutureWarning, pandas_note, "my_notebook") == 1
    assert shown(UserWarning, "some other RecBole warning", "recbole.trainer.trainer") == 1
