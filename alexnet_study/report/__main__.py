"""``python -m alexnet_study.report SWEEP_DIR [...]``: (re)write the report of any sweep dir,
finished, failed or partial. Exit status 1 when a job did not finish ok, 2 when a dir is missing."""

from __future__ import annotations

import argparse
import logging
import sys

from alexnet_study.report.write import failures, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alexnet_study.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dirs", nargs="+", help="sweep directories (outputs/<task>/multiruns/<time>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    status = 0
    for sweep_dir in args.sweep_dirs:
        try:
            sweep = write_report(sweep_dir)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 2
            continue
        bad = failures(sweep)
        print(f"{sweep.path / 'report.md'}: {len(sweep.jobs)} jobs, {len(sweep.jobs) - len(bad)} ok")
        for line in bad:
            print(f"  {line}")
        status = max(status, 1 if bad else 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
