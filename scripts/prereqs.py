"""Which Debian packages `make run` or `make test` still needs, in under a second.

Reads deploy/debian-packages.txt, the one list of the project's system packages (the
README's install line and .ci/run read it too), and checks each package's proof: a
program on PATH (or in /usr/sbin, /usr/local/bin), a path glob, or `python:MODULE`
importable by the interpreter that runs this. Standard library only: it runs before
any virtualenv exists.

    python3 scripts/prereqs.py check run|test   # one sentence and exit 1 when any is missing
    python3 scripts/prereqs.py missing run|test # the missing packages, one a line
    python3 scripts/prereqs.py list [run|test]  # every package, one a line
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

LIST = Path(__file__).resolve().parent.parent / "deploy" / "debian-packages.txt"
_EXTRA_PATH = ("/usr/sbin", "/sbin", "/usr/local/bin", "/usr/local/sbin")


@dataclass(frozen=True)
class Package:
    name: str
    proof: str
    needed_by: frozenset[str]


def read(path: Path = LIST) -> list[Package]:
    packages = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].split()
        if not line:
            continue
        if len(line) < 3:
            raise ValueError(f"{path}: {raw!r} needs a package, a proof and a command")
        packages.append(Package(line[0], line[1], frozenset(line[2:])))
    return packages


def present(proof: str) -> bool:
    if proof.startswith("python:"):
        return importlib.util.find_spec(proof.removeprefix("python:")) is not None
    if "/" in proof:
        return any(os.access(p, os.X_OK) for p in glob.glob(proof))
    search = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_PATH])
    return shutil.which(proof, path=search) is not None


def missing(command: str, packages: list[Package]) -> list[str]:
    return [p.name for p in packages if command in p.needed_by and not present(p.proof)]


def sentence(command: str, names: list[str]) -> str:
    plural = "packages" if len(names) > 1 else "package"
    return (
        f"`make {command}` needs the Debian {plural} {', '.join(names)}, missing here; "
        f"install with: sudo apt-get install --no-install-recommends {' '.join(names)}"
    )


def main(argv: list[str]) -> int:
    verb, command = [*argv, "", ""][:2]
    packages = read()
    if verb == "list":
        for p in packages:
            if not command or command in p.needed_by:
                print(p.name)
        return 0
    if verb not in ("check", "missing") or command not in ("run", "test"):
        print(__doc__, file=sys.stderr)
        return 2
    names = missing(command, packages)
    if verb == "missing":
        for name in names:
            print(name)
        return 0
    if names:
        print(sentence(command, names), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
