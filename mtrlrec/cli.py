"""``mtrlrec run | bench | list | data``: argument parsing only, logic lives in modules.

Examples::

    mtrlrec run experiments/quickstart.gin --seeds 20 --out runs/qs
    mtrlrec run experiments/quickstart.gin --gin_param 'EpsilonGreedy.epsilon = 0.05'
    mtrlrec run --resume runs/qs
    mtrlrec bench bandit_analytic --quick
    mtrlrec list
    mtrlrec data obd
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from mtrlrec.core.errors import ConfigError

DATASETS = ("obd", "movielens")


def _add_cpu_devices(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cpu-devices", type=int, default=None, metavar="N",
        help="JAX CPU devices the seeds are spread over (default: one per core; 1: one "
             "device; the results are the same, bit for bit)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mtrlrec", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run an experiment (a Gin file)")
    r.add_argument("experiment", nargs="?", help="Gin file, e.g. experiments/quickstart.gin")
    r.add_argument("--gin_param", "--gin-param", action="append", default=[], metavar="BINDING",
                   help="extra Gin binding, e.g. 'EpsilonGreedy.epsilon = 0.05' (repeatable)")
    r.add_argument("--seeds", type=int, default=None, help="number of seeds (overrides the file)")
    r.add_argument("--out", default=None, help="run directory (must not exist or be empty)")
    r.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run in DIR from its latest checkpoint")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_cpu_devices(r)

    b = sub.add_parser("bench", help="reproduce a table from benchmarks/tables/")
    b.add_argument("table", help="table name (file stem in benchmarks/tables/) or path")
    b.add_argument("--quick", action="store_true", help="the small CI version of the table")
    b.add_argument("--out", default=None, help="output directory")
    b.add_argument("--seeds", type=int, default=None, help="override the table's seeds")
    b.add_argument("--rows", default=None, help="comma-separated row keys to run (default all)")
    b.add_argument("--save-results", action="store_true",
                   help="also copy table.md/table.csv to benchmarks/results/<table>[-quick].*")
    b.add_argument("--resume", default=None, metavar="DIR",
                   help="continue an interrupted table in DIR: reuse its finished rows")
    b.add_argument("--no-progress", action="store_true")
    _add_cpu_devices(b)

    sub.add_parser("list", help="list experiments and tables")

    d = sub.add_parser("data", help="prepare a data set in the local cache")
    d.add_argument("name", choices=DATASETS)
    d.add_argument("--cache", default=None, help="cache directory (default ~/.cache/mtrlrec/NAME)")
    d.add_argument("--source", default=None, help="a local file/folder/wheel to read from")
    d.add_argument("--force", action="store_true", help="prepare again even if present")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from mtrlrec import config

    config.enable_compilation_cache()
    try:
        if args.command in ("run", "bench"):
            config.use_cpu_cores(args.cpu_devices)
        if args.command == "run":
            from mtrlrec.experiment import run_experiment

            if args.experiment is None and args.resume is None:
                raise ConfigError("give an experiment file or --resume DIR.")
            if args.resume and (args.experiment or args.gin_param or args.seeds):
                raise ConfigError("--resume DIR reuses the run's own experiment, bindings and "
                                  "seeds; do not pass them again.")
            run_dir, _ = run_experiment(args.experiment, args.gin_param, out=args.out,
                                        seeds=args.seeds, resume=args.resume,
                                        progress=not args.no_progress)
            print(f"run directory: {run_dir}")
            print((run_dir / "summary.md").read_text())
            print(f"TensorBoard: tensorboard --logdir {run_dir / 'tb'}")
        elif args.command == "bench":
            from mtrlrec.bench.runner import run_table

            rows = args.rows.split(",") if args.rows else None
            out_dir, table = run_table(args.table, quick=args.quick, out=args.out,
                                       seeds=args.seeds, rows=rows,
                                       save_results=args.save_results,
                                       progress=not args.no_progress, resume=args.resume)
            print(table.markdown)
            print(f"written to {out_dir}")
        elif args.command == "list":
            from mtrlrec.bench.catalog import list_text

            print(list_text())
        elif args.command == "data":
            module = importlib.import_module(f"mtrlrec.data.{args.name}")
            path = module.prepare(args.cache, args.source, args.force)
            print(f"{args.name} ready in {path}")
    except ConfigError as e:
        print(f"mtrlrec: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mtrlrec: interrupted; the run directory keeps what was written "
              "(continue with --resume DIR)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
