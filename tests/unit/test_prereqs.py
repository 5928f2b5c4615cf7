"""The one list of Debian packages (deploy/debian-packages.txt) and its check."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import prereqs  # noqa: E402


def test_the_readme_install_line_names_exactly_the_list() -> None:
    line = re.search(r"^sudo apt-get install (.+)$", (ROOT / "README.md").read_text(), re.M)
    assert line is not None
    words = line.group(1).split()
    assert "--no-install-recommends" in words  # the bouncers recommend `crowdsec`
    assert [w for w in words if not w.startswith("-")] == [p.name for p in prereqs.read()]


def test_ci_reads_the_list_through_the_same_check() -> None:
    assert "scripts/prereqs.py missing test" in (ROOT / ".ci" / "run").read_text()


def test_every_package_is_needed_by_a_known_command() -> None:
    for package in prereqs.read():
        assert package.needed_by <= {"run", "test"}, package
    run = {p.name for p in prereqs.read() if "run" in p.needed_by}
    assert {"postgresql", "redis-server", "python3-venv"} <= run


@pytest.mark.parametrize(
    ("proof", "expected"),
    [
        ("sh", True),
        ("no-such-program-here", False),
        ("python:json", True),
        ("python:no_such_module_here", False),
        ("/bin/s[h]", True),
        ("/nonexistent/*/bin/x", False),
    ],
)
def test_proofs(proof: str, expected: bool) -> None:
    assert prereqs.present(proof) is expected


def test_a_missing_package_is_one_sentence_and_exit_1(tmp_path: Path) -> None:
    listing = tmp_path / "packages.txt"
    listing.write_text("# a comment\nbash bash run test\nnopkg no-such-program-here test\n")
    packages = prereqs.read(listing)
    assert prereqs.missing("run", packages) == []
    assert prereqs.missing("test", packages) == ["nopkg"]
    text = prereqs.sentence("test", ["nopkg", "other"])
    assert text.count("\n") == 0
    assert "sudo apt-get install --no-install-recommends nopkg other" in text


def test_the_check_passes_here_and_answers_fast() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "prereqs.py"), "check", "test"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    assert done.returncode == 0, done.stderr
