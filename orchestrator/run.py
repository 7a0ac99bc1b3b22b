"""`python -m orchestrator.run grid.yaml`: run the grid (folds x models x search axes; driver/grid.py has its phases).

Exit codes: 0 every trial ended (FINISHED or KILLED by the scheduler); 1 a trial
FAILED or anything unexpected; 2 bad input (config, data, a storage that cannot be
written), with the field named; 3 no space left on a disk it writes (`--resume`
continues once there is room); 130 interrupted (Ctrl-C: `--resume` continues).
"""

from __future__ import annotations

import argparse
import sys

from orchestrator.cli import main_guard, parse_override
from orchestrator.config import PseudoConfig, load_grid
from orchestrator.console import quiet_libraries
from orchestrator.errors import InputError
from orchestrator.search.preflight import check_libraries


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", help="grid.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a grid key, e.g. --set train.epochs=3 (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="print the trial plan and touch nothing")
    parser.add_argument("--address", default=None, help="Ray cluster address ('auto' joins `ray up`); default: local Ray")
    parser.add_argument("--verbose", action="store_true", help="stream Ray worker logs and MLflow's INFO lines to this console")
    parser.add_argument("--pseudo", default=None, metavar="ENSEMBLE_RUN",
                        help="a pseudo-labelling round: the confident test predictions of this ensemble run (its id, or "
                             "'latest') join every fold's training rows (pseudo.threshold, default 0.9, or pseudo.top_fraction)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the grid's last run: unfinished trials go on from their last checkpoint in their own "
                             "MLflow runs (without it they start afresh); ended trials are reused either way")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_libraries(args.verbose)
    grid = load_grid(args.grid, [parse_override(s) for s in args.set])
    check_libraries(grid, args.grid)
    if args.pseudo:  # not a --set: a run id is text, and YAML would read some as numbers
        rule = grid.pseudo.model_dump() if grid.pseudo else {}
        grid = grid.model_copy(update={"pseudo": PseudoConfig.model_validate({**rule, "teacher": args.pseudo})})
        try:  # model_copy skips the validators: a multilabel grid refuses the round here too
            grid._fits_the_task()
        except ValueError as err:
            raise InputError(f"--pseudo: {err}", source=args.grid) from None
    # imported here: the driver's modules bring pandas, MLflow and Ray's pieces, which `--help` and a bad
    # grid's exit 2 never need
    from orchestrator.driver.grid import GridRun, dry_run

    return dry_run(grid) if args.dry_run else GridRun(grid, args.address, args.verbose, args.resume).run()


if __name__ == "__main__":
    sys.exit(main_guard(main))
