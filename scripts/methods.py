"""The methods of an experiment, one config name a line, in the report's order: what the shell scripts loop over.

python scripts/methods.py offline            # mtl recadam gradnorm ... sequential_reptile, one a line
python scripts/methods.py synthetic --labels # config name, a tab, the label tables and figures show
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from lightning_modules.algorithms import registry


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="a folder of configs/ (offline, synthetic, tydiqa, ...)")
    parser.add_argument("--configs", type=Path, default=None, help="the configs root (default: the repository's)")
    parser.add_argument("--labels", action="store_true", help="also print each method's label")
    args = parser.parse_args(argv)
    try:
        found = registry.methods(args.experiment, args.configs)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    for method in found:
        print(f"{method.key}\t{method.label}" if args.labels else method.key)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
