"""Go's own sumdb/note and sumdb/tlog as an independent verifier of the transparency
log (tests/interop/tlogverify): built once per session, offline, in GOPATH mode
against Debian's golang-golang-x-mod-dev sources. The fixtures live in conftest.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SOURCE = Path(__file__).resolve().parent / "interop" / "tlogverify" / "main.go"
GOPATH = Path("/usr/share/gocode")
PACKAGES = "golang-go and golang-golang-x-mod-dev"

Run = Callable[[dict[str, Any]], "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="session")
def tlogverify(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.fail(f"the Go toolchain is missing: install the Debian packages {PACKAGES}")
    if not (GOPATH / "src/golang.org/x/mod/sumdb/note").is_dir():
        pytest.fail(f"golang.org/x/mod is missing from {GOPATH}: install {PACKAGES}")
    out = tmp_path_factory.mktemp("tlogverify")
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": str(GOPATH),
        "GOCACHE": str(out / "cache"),
        "GOPROXY": "off",
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
    }
    binary = out / "tlogverify"
    build = subprocess.run(
        [go, "build", "-o", str(binary), str(SOURCE)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if build.returncode:
        pytest.fail(f"go build failed (needs {PACKAGES}):\n{build.stderr}")
    return binary


@pytest.fixture
def run(tlogverify: Path) -> Run:
    def go(request: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(tlogverify)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    return go
