"""scripts/devservices.py: the set-up helpers that `make run` and the fixtures rely on."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

import devservices  # importable: tests/conftest.py puts scripts/ on sys.path


@pytest.mark.parametrize(
    ("name", "package"),
    [("initdb", "postgresql"), ("postgres", "postgresql"), ("redis-server", "redis-server")],
)
def test_missing_binary_names_the_debian_package(tmp_path: Path, name: str, package: str) -> None:
    with pytest.raises(devservices.MissingBinary) as caught:
        devservices.find_binary(name, path=str(tmp_path), pg_bin_glob=str(tmp_path / "*" / "bin"))
    message = str(caught.value)
    assert f"Debian package {package}" in message
    assert message.endswith(".") and "\n" not in message


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_find_binary_prefers_path_then_highest_postgres_version(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    _executable(lib / "9.6" / "bin" / "initdb")
    newest = _executable(lib / "15" / "bin" / "initdb")
    _executable(lib / "13" / "bin" / "initdb")
    empty = tmp_path / "empty"
    empty.mkdir()
    glob = str(lib / "*" / "bin")
    assert devservices.find_binary("initdb", path=str(empty), pg_bin_glob=glob) == newest

    on_path = _executable(tmp_path / "path" / "initdb")
    found = devservices.find_binary("initdb", path=str(on_path.parent), pg_bin_glob=glob)
    assert found == on_path


def test_free_port_is_bindable() -> None:
    port = devservices.free_port()
    assert 1024 <= port < 65536
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
