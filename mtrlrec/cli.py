"""``mtrlrec run | bench | list | data``: argument parsing only, logic lives in modules."""

from __future__ import annotations

import argparse
import importlib
import os
import pathlib
import sys
from typing import Sequence

from mtrlrec.core.errors import ConfigError

DATASETS = ("obd", "movielens")

DESCRIPTION = """\
mtrlrec: reinforcement learning for recommender systems in JAX.

A researcher writes an experiment as a Gin file (experiments/ holds many), runs
it with one command, and gets a run directory: the operative config, curves in
TensorBoard, a summary with mean ± standard error over seeds, a plot and
checkpoints.

commands:
  run     run an experiment (a Gin file) into a run directory; --resume DIR
          continues an interrupted run
  bench   reproduce a table from benchmarks/tables/: every row, the published
          reference values beside ours, pass/deviate marks
  list    list the experiments and tables that ship with mtrlrec
  data    prepare a data set (Open Bandit Dataset, MovieLens-100k) in the cache
"""

EPILOG = """\
examples:
  mtrlrec run experiments/quickstart.gin
  mtrlrec run experiments/quickstart.gin --seeds 5 --out runs/qs \\
      --gin_param 'EpsilonGreedy.epsilon = 0.05'
  mtrlrec run --resume runs/qs              # after Ctrl-C or a crash
  tensorboard --logdir runs/                # curves, config, HParams of every run
  mtrlrec bench bandit_analytic --quick
  mtrlrec list

`mtrlrec COMMAND --help` lists a command's options. A mistake in a file, binding
or option stops before anything runs, with one line naming it (exit status 2);
docs/reliability.md lists them.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with mistakes on one line (``mtrlrec: error: ...``), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"mtrlrec: error: {message} (see `{self.prog} --help`)\n")


def _version() -> str:
    from mtrlrec import __version__

    return __version__


def _add_cpu_devices(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cpu-devices", type=int, default=None, metavar="N",
        help="JAX CPU devices the seeds are spread over (default: one per core; 1: one "
             "device; the results are the same, bit for bit)")


def _add_distributed(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group(
        "several processes or hosts (jax.distributed; docs/scaling.md)",
        "Start the same command once per process. Seeds are spread over the devices of "
        "every process; process 0 alone writes the run directory, TensorBoard and tables. "
        "Each flag falls back to its variable: MTRLREC_COORDINATOR, MTRLREC_NUM_PROCESSES, "
        "MTRLREC_PROCESS_ID, MTRLREC_INIT_TIMEOUT.")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="address of process 0 and a free port, e.g. 10.0.0.1:1234")
    g.add_argument("--num-processes", type=int, default=None, metavar="N",
                   help="number of processes")
    g.add_argument("--process-id", type=int, default=None, metavar="I",
                   help="this process's id, 0 .. N-1")
    g.add_argument("--distributed", action="store_true",
                   help="detect the three above from the cluster (SLURM, Open MPI), as "
                        "jax.distributed.initialize() does")
    g.add_argument("--init-timeout", type=int, default=None, metavar="SECONDS",
                   help="give up (one line, exit status 2) if not every process has joined "
                        "within this time (default 60)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mtrlrec", description=DESCRIPTION, epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"mtrlrec {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=_Parser, help="run, bench, list or data (see above)")

    r = sub.add_parser(
        "run",
        description="Run an experiment file into a new run directory, or continue one with "
                    "--resume DIR.",
        epilog="examples:\n  mtrlrec run experiments/quickstart.gin --seeds 5 --out runs/qs\n"
               "  mtrlrec run --resume runs/qs",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("experiment", nargs="?", help="Gin file, e.g. experiments/quickstart.gin")
    r.add_argument("--gin_param", "--gin-param", action="append", default=[], metavar="BINDING",
                   help="extra Gin binding, e.g. 'EpsilonGreedy.epsilon = 0.05' (repeatable)")
    r.add_argument("--seeds", type=int, default=None, help="number of seeds (overrides the file)")
    r.add_argument("--out", default=None,
                   help="run directory (must not exist or be empty; default "
                        "runs/<experiment>-<time>)")
    r.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run in DIR from its latest checkpoint, with the "
                        "configuration it started with (from any working directory)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_cpu_devices(r)
    _add_distributed(r)

    b = sub.add_parser(
        "bench",
        description="Run every row of a table spec, aggregate mean ± SE over seeds and judge "
                    "the cells against the published reference values.",
        epilog="examples:\n  mtrlrec bench bandit_analytic --quick\n"
               "  mtrlrec bench chapelle_li --rows ts,ucb1 --out runs/cl",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("table", help="table name (file stem in benchmarks/tables/) or path")
    b.add_argument("--quick", action="store_true", help="the small CI version of the table")
    b.add_argument("--out", default=None, help="output directory")
    b.add_argument("--seeds", type=int, default=None, help="override the table's seeds")
    b.add_argument("--rows", default=None, help="comma-separated row keys to run (default all)")
    b.add_argument("--save-results", action="store_true",
                   help="also copy table.md/table.csv to benchmarks/results/<table>[-quick].*")
    b.add_argument("--resume", default=None, metavar="DIR",
                   help="continue an interrupted table in DIR: reuse its finished rows")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_cpu_devices(b)
    _add_distributed(b)

    sub.add_parser("list",
                   description="List the experiment files and table specs with their "
                               "descriptions.")

    d = sub.add_parser("data",
                       description="Prepare a data set in the cache (~/.cache/mtrlrec/NAME or "
                                   "$MTRLREC_CACHE/NAME).",
                       epilog="examples:\n  mtrlrec data movielens\n"
                              "  mtrlrec data obd --source /path/to/open_bandit_dataset",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("name", choices=DATASETS)
    d.add_argument("--cache", default=None, help="cache directory (default ~/.cache/mtrlrec/NAME)")
    d.add_argument("--source", default=None, help="a local file/folder/wheel to read from")
    d.add_argument("--force", action="store_true", help="prepare again even if present")
    return p


def _announce(kind: str, seen: list):
    def announce(path: pathlib.Path) -> None:
        seen.append(path)
        print(f"{kind}: {path}", flush=True)

    return announce


def main(argv: Sequence[str] | None = None) -> int:
    from mtrlrec.train import sharding

    try:
        rc = _main(argv)
    except BaseException:
        if not sharding.multi_process():
            raise
        import traceback

        traceback.print_exc()
        rc = 1
    if rc and sharding.multi_process():
        # A process of a multi-process run that fails ends at once: the orderly shutdown
        # would wait for the others, which stop in turn when their next collective finds
        # this process gone (one line there too).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


def _main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started: list[pathlib.Path] = []  # the run/bench directory, once it exists
    from mtrlrec.train import sharding
    try:
        if args.command in ("run", "bench"):
            from mtrlrec import config

            config.enable_compilation_cache()
            config.use_cpu_cores(args.cpu_devices)
            sharding.initialize(args.coordinator, args.num_processes, args.process_id,
                                auto=args.distributed, timeout=args.init_timeout)
            if not sharding.is_main():
                args.no_progress = True  # one progress bar: process 0's
        if args.command == "run":
            from mtrlrec.experiment import run_experiment

            if args.experiment is None and args.resume is None:
                raise ConfigError("give an experiment file or --resume DIR.")
            run_dir, _ = run_experiment(args.experiment, args.gin_param, out=args.out,
                                        seeds=args.seeds, resume=args.resume,
                                        progress=not args.no_progress,
                                        announce=_announce("run directory", started))
            if sharding.is_main():
                print((run_dir / "summary.md").read_text())
                print(f"TensorBoard: tensorboard --logdir {run_dir / 'tb'}")
            else:
                print(f"process {sharding.process_index()}: done; process 0 wrote {run_dir}")
        elif args.command == "bench":
            from mtrlrec.bench.runner import run_table

            rows = args.rows.split(",") if args.rows else None
            out_dir, table = run_table(args.table, quick=args.quick, out=args.out,
                                       seeds=args.seeds, rows=rows,
                                       save_results=args.save_results,
                                       progress=not args.no_progress, resume=args.resume,
                                       announce=_announce("output directory", started))
            if sharding.is_main():
                print(table.markdown)
                print(f"written to {out_dir}")
            else:
                print(f"process {sharding.process_index()}: done; process 0 wrote {out_dir}")
        elif args.command == "list":
            from mtrlrec.bench.catalog import list_text

            print(list_text())
        elif args.command == "data":
            from mtrlrec.data import prepare

            path = prepare(args.name, args.cache, args.source, args.force)
            print(f"{args.name} ready in {path}")
    except ConfigError as e:
        print(f"mtrlrec: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if os.environ.get("MTRLREC_TRACEBACK"):
            raise
        # A file system refusal (full disk, permissions, a file where a folder should be):
        # one line naming the path; MTRLREC_TRACEBACK=1 shows where it happened.
        where = f": {e.filename}" if e.filename else ""
        print(f"mtrlrec: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except Exception as e:
        if not (sharding.multi_process() and type(e).__name__ == "JaxRuntimeError"):
            raise
        # A collective failed: another process of the run died or was stopped.
        first = str(e).strip().splitlines()[0][:300]
        print(f"mtrlrec: error: another process of this {sharding.num_processes()}-process run "
              f"stopped, so process {sharding.process_index()} stops too ({first})",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        if not sharding.is_main():
            print(f"mtrlrec: process {sharding.process_index()} interrupted with the others; "
                  "process 0 says where the run is kept.", file=sys.stderr)
            return 130
        if started and started[-1].exists():
            again = (f"mtrlrec run --resume {started[-1]}" if args.command == "run" else
                     f"mtrlrec bench {args.table}{' --quick' if args.quick else ''} "
                     f"--resume {started[-1]}")
            print(f"mtrlrec: interrupted; {started[-1]} keeps what was written. Continue with: "
                  f"{again}", file=sys.stderr)
        elif started:
            print(f"mtrlrec: interrupted before any result was written; {started[-1]} was "
                  "removed.", file=sys.stderr)
        else:
            print("mtrlrec: interrupted before the run started; nothing was written.",
                  file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
