"""recbole-hetcomp: a RecBole plugin that distils heterogeneous recommender ensembles (HetComp).

RecBole itself is installed separately with ``pip install --no-deps recbole==1.2.1``: its
metadata requires ray<=2.6.3 (no wheel for Python >= 3.12) and plotly, which only its
hyper-parameter tuning uses. Its real run-time needs are listed below.
"""

import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithProperties(build_py):
    """Ship the top-level ``properties/`` inside the package, where an installed copy looks."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads properties/ from the checkout
        target = os.path.join(self.build_lib, "recbole_hetcomp", "properties")
        if os.path.isdir(target):
            shutil.rmtree(target)
        shutil.copytree(os.path.join(HERE, "properties"), target,
                        ignore=shutil.ignore_patterns("*.pyc", "__pycache__"))


setup(
    name="recbole-hetcomp",
    version="0.1.0",
    description="HetComp (WWW 2023) as a RecBole plugin: distil a heterogeneous recommender "
                "ensemble into one small, fast model",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["recbole_hetcomp", "recbole_hetcomp.*"]),
    py_modules=["run_hetcomp"],
    cmdclass={"build_py": BuildPyWithProperties},
    install_requires=[
        "torch>=2.6",
        "numpy>=1.24",
        "scipy",
        "pandas<3",  # RecBole's in-place fillna is a silent no-op under pandas 3 copy-on-write
        "pyyaml",
        "tqdm",
        "colorlog==4.7.2",  # RecBole pins these two exactly
        "colorama==0.4.4",
        "scikit-learn",
        "texttable",
        "tensorboard",  # imported when recbole.utils loads
        "matplotlib",
    ],
    extras_require={
        "serve": ["faiss-cpu>=1.7"],  # the optional exact item index (export_index)
        # teacher_workers / seed_workers > 1; the range this package was tested with
        "ray": ["ray>=2.40.0,<2.41"],
        "test": ["pytest", "setuptools", "wheel", "faiss-cpu>=1.7", "ray>=2.40.0,<2.41"],
    },
    entry_points={
        "console_scripts": [
            "hetcomp=recbole_hetcomp.cli:main",
            "hetcomp-convert-citeulike=recbole_hetcomp.data.citeulike:main",
            "hetcomp-recommend=recbole_hetcomp.serving.cli:recommend_main",
            "hetcomp-serve=recbole_hetcomp.serving.cli:serve_main",
        ]
    },
)
