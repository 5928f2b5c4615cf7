"""Keys: ids, strict encodings, verification and the key file."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest

from honeymesh_client.protocol.keys import (
    NodeKey,
    b64decode_any,
    decode_public_key,
    encode_public_key,
    keyid_of,
    verify_ed25519,
)

# RFC 8032 section 7.1, TEST 1.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)

P = 2**255 - 19


def test_rfc8032_vector() -> None:
    key = NodeKey.from_private_bytes(RFC8032_SECRET)
    assert key.public_raw == RFC8032_PUBLIC
    assert key.sign(b"") == RFC8032_SIGNATURE
    assert verify_ed25519(RFC8032_PUBLIC, RFC8032_SIGNATURE, b"")
    assert not verify_ed25519(RFC8032_PUBLIC, RFC8032_SIGNATURE, b"x")
    assert not verify_ed25519(RFC8032_PUBLIC, RFC8032_SIGNATURE[:-1], b"")
    assert not verify_ed25519(RFC8032_PUBLIC[:-1], RFC8032_SIGNATURE, b"")


def test_keyid_vector() -> None:
    expected = hashlib.sha256(RFC8032_PUBLIC).hexdigest()
    assert keyid_of(RFC8032_PUBLIC) == expected
    assert expected == "21fe31dfa154a261626bf854046fd2271b7bed4b6abe45aa58877ef47f9721b9"
    key = NodeKey.from_private_bytes(RFC8032_SECRET)
    assert key.keyid == expected
    assert key.public_b64 == base64.b64encode(RFC8032_PUBLIC).decode()
    assert "9d61" not in repr(key)
    with pytest.raises(ValueError):
        keyid_of(b"short")


def test_public_key_round_trip() -> None:
    text = encode_public_key(RFC8032_PUBLIC)
    assert decode_public_key(text) == RFC8032_PUBLIC


def _small_order_encodings() -> list[bytes]:
    y8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022
    ys = [0, 1, P - 1, y8, P - y8]
    out = [y.to_bytes(32, "little") for y in ys]
    out += [(y | 1 << 255).to_bytes(32, "little") for y in (y8, P - y8, 0)]
    return out


@pytest.mark.parametrize(
    "text",
    [
        "",
        encode_public_key(RFC8032_PUBLIC).rstrip("="),  # no padding
        base64.urlsafe_b64encode(b"\xfb" * 32).decode(),  # URL-safe alphabet
        " " + encode_public_key(RFC8032_PUBLIC),
        encode_public_key(RFC8032_PUBLIC) + "\n",
        base64.b64encode(b"\x01" * 31).decode(),  # 31 bytes
        base64.b64encode(b"\x01" * 33).decode(),  # 33 bytes
        encode_public_key(RFC8032_PUBLIC)[:42] + "B=",  # non-zero trailing bits
        base64.b64encode(b"\xff" * 32).decode(),  # y >= p: non-canonical
        base64.b64encode((2).to_bytes(32, "little")).decode(),  # y = 2 is not on the curve
        *[base64.b64encode(raw).decode() for raw in _small_order_encodings()],
    ],
)
def test_decode_public_key_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        decode_public_key(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("aGVsbG8=", b"hello"),
        ("aGVsbG8", b"hello"),
        ("", b""),
        ("-_-_", base64.urlsafe_b64decode("-_-_")),
        ("+/+/", base64.b64decode("+/+/")),
        ("-_8", base64.urlsafe_b64decode("-_8=")),
        ("-_8=", base64.urlsafe_b64decode("-_8=")),
    ],
)
def test_b64decode_any_accepts(text: str, expected: bytes) -> None:
    assert b64decode_any(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "aGVsbG8==",  # too much padding
        "aGVsb=G8",  # padding inside
        "aGVsbG8=\n",
        "aGVs bG8=",
        "-_+/",  # mixed alphabets
        "a",  # impossible length
        "aGVsbG9=",  # non-zero trailing bits
        "aGVsbG9",  # same, without padding
        "aGVsbG8=é",
        "aGV=sbG8",
    ],
)
def test_b64decode_any_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        b64decode_any(text)


def test_save_load_mode_0600(tmp_path: Path) -> None:
    key = NodeKey.generate()
    path = tmp_path / "node.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = NodeKey.load(path)
    assert loaded.public_raw == key.public_raw
    assert loaded.keyid == key.keyid
    assert [p.name for p in tmp_path.iterdir()] == ["node.key"]  # no temp file left


def test_save_refuses_overwrite_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    first = NodeKey.generate()
    first.save(path)
    second = NodeKey.generate()
    with pytest.raises(FileExistsError):
        second.save(path)
    assert NodeKey.load(path).keyid == first.keyid
    second.save(path, force=True)
    assert NodeKey.load(path).keyid == second.keyid
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]


def test_save_ignores_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        NodeKey.generate().save(tmp_path / "k")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o601])
def test_load_refuses_readable_by_others(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    NodeKey.generate().save(path)
    path.chmod(mode)
    with pytest.raises(PermissionError, match="owner only"):
        NodeKey.load(path)


def test_load_refuses_other_content(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not a key")
    os.close(fd)
    with pytest.raises(ValueError):
        NodeKey.load(path)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        NodeKey.load(tmp_path / "absent")


def test_from_private_bytes_length() -> None:
    with pytest.raises(ValueError):
        NodeKey.from_private_bytes(b"\x00" * 31)
