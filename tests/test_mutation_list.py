"""benchmarks/mutation_check.py's planted misreadings still match the code they edit.

The mutation check (13 min) is run by hand, not by CI; this keeps its list from rotting in the
meantime: a refactor that moves a snippet must update the mutation with it.
"""

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_mutation_snippet_occurs_exactly_once():
    spec = importlib.util.spec_from_file_location(
        "mutation_check", os.path.join(ROOT, "benchmarks", "mutation_check.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert len(module.MUTATIONS) >= 86
    assert module.check_snippets(module.MUTATIONS) == []
