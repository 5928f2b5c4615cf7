"""Run the benchmarks: every module of this package that has a `main()`.

    python -m bench              # all of them, in name order
    python -m bench verify       # only bench/verify.py
    python -m bench --list

Each module's `main()` is called without arguments and prints its own short table,
then its targets, each `met` or `MISSED` (bench/targets.py); run a module alone
(`python -m bench.verify --help`) to pass it options. A module that misses a target or
fails does not stop the others; the run ends with one summary line per module and
exits nonzero if any missed a target or failed.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

from bench import targets

HERE = Path(__file__).resolve().parent


def discover() -> list[str]:
    """Names of the modules beside this file that define a callable `main`."""
    names = []
    for info in pkgutil.iter_modules([str(HERE)]):
        if info.name.startswith("_") or info.ispkg:
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if callable(getattr(module, "main", None)):
            names.append(info.name)
    return sorted(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    available = discover()
    if args.list:
        print("\n".join(available))
        return 0
    unknown = [n for n in args.names if n not in available]
    if unknown:
        print(
            f"no benchmark named {', '.join(unknown)}; available: {', '.join(available)}.",
            file=sys.stderr,
        )
        return 2
    if not available:
        print("No benchmarks found in bench/.")
        return 0
    failed = []
    summary = []
    for name in args.names or available:
        module = importlib.import_module(f"bench.{name}")
        started = time.monotonic()
        saved_argv = sys.argv
        sys.argv = [f"bench.{name}"]  # a module that reads sys.argv sees no options
        targets.take_reported()  # nothing left over from an earlier module
        error = None
        try:
            status = module.main()
            if status not in (None, 0):
                error = f"exit status {status}"
        except Exception as exc:  # one broken benchmark does not stop the others
            traceback.print_exc()
            error = f"raised {type(exc).__name__}"
        finally:
            sys.argv = saved_argv
        print(f"-- {name}: {time.monotonic() - started:.1f} s\n", flush=True)
        judged = targets.take_reported()
        missed = [t.name for t in judged if not t.ok]
        if missed:
            summary.append(f"bench: {name}: MISSED {'; '.join(missed)}")
        elif error is not None:
            summary.append(f"bench: {name}: failed ({error}), {len(judged)} targets judged")
        elif judged:
            summary.append(f"bench: {name}: all met")
        else:
            summary.append(f"bench: {name}: no targets judged")
        if missed or error is not None:
            failed.append(name)
    print("\n".join(summary), flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
