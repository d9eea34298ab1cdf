"""python -m tools.train <trainer> [options]: the trainers of tools/train/ by name.

    python -m tools.train eagle3 --target assets/target --out runs/eagle3 --minutes 30
    python -m tools.train msd --target assets/target --out runs/msd --minutes 15

Each is also a module of its own (``python -m tools.train.eagle3 ...``)."""

from __future__ import annotations

import importlib
import sys

TRAINERS = ("eagle3", "heldout", "msd", "distill", "small", "target", "grow", "grid_pretrain")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in TRAINERS:
        print(__doc__.strip() + f"\n\ntrainers: {', '.join(TRAINERS)}", file=sys.stderr if argv else sys.stdout)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    mod = importlib.import_module(f"tools.train.{argv[0]}")
    sys.argv = [f"python -m tools.train {argv[0]}"] + argv[1:]
    res = mod.main(argv[1:])
    return res if isinstance(res, int) else 0


if __name__ == "__main__":
    sys.exit(main())
