"""Command line, like RecBole's run_recbole.py.

    python run_hetcomp.py --model=HetCompStudent --dataset=ml-100k [--config_files="a.yaml b.yaml"]
                          [--key=value ...]
"""

import sys

from recbole_hetcomp.cli import main

if __name__ == "__main__":
    sys.exit(main())
