"""C2SP signed notes and tlog checkpoints: Go's sumdb/note vectors, round trips
and every rejection."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from honeymesh_client.protocol import note
from honeymesh_client.protocol.note import Checkpoint, NoteError

# golang.org/x/mod/sumdb/note note_test.go (TestNewVerifier, TestSign, TestOpen).
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqd"
    "ngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnW"
    "Lox33WWd1RvMc+QQ=\n"
)
ROOT = bytes(range(32))


def peter_key() -> Ed25519PrivateKey:
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:]
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_go_verifier_key_vector() -> None:
    v = note.parse_verifier_key(PETER_VKEY)
    assert v.name == "PeterNeumann"
    assert v.key_hash == bytes.fromhex("c74f20a3")
    assert note.key_hash(v.name, v.public_raw) == v.key_hash
    assert note.verifier_key(v.name, v.public_raw) == PETER_VKEY
    assert public_raw(peter_key()) == v.public_raw


def test_go_sign_vector_is_reproduced() -> None:
    assert note.sign(TEXT, "PeterNeumann", peter_key()) == TEXT + "\n" + PETER_SIG


def test_go_open_vector() -> None:
    peter, enoch = note.parse_verifier_key(PETER_VKEY), note.parse_verifier_key(ENOCH_VKEY)
    opened = note.open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [peter])
    assert opened.text == TEXT
    assert opened.names == ("PeterNeumann",)
    assert [s.line() for s in opened.unknown] == [ENOCH_SIG]
    both = note.open_note((TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode(), [peter, enoch])
    assert both.names == ("PeterNeumann", "EnochRoot")
    assert both.unknown == ()
    with pytest.raises(NoteError, match="no verifiable signatures"):
        note.open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])


@pytest.mark.parametrize(
    "bad",
    [
        PETER_VKEY[:-1],
        PETER_VKEY + "A",
        PETER_VKEY.replace("c74f20a3", "c74f20a4"),
        PETER_VKEY.replace("c74f20a3", "C74F20A3"),
        PETER_VKEY.replace("PeterNeumann", "Peter Neumann"),
        PETER_VKEY.replace("PeterNeumann", ""),
        "PeterNeumann+c74f20a3",
        "PeterNeumann",
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_bad_verifier_keys(bad: str) -> None:
    with pytest.raises(NoteError):
        note.parse_verifier_key(bad)


def test_round_trip_and_cosignature() -> None:
    hub, node, other = (Ed25519PrivateKey.generate() for _ in range(3))
    hub_v = note.parse_verifier_key(note.verifier_key("hub.example", public_raw(hub)))
    node_v = note.parse_verifier_key(note.verifier_key("node-7", public_raw(node)))
    text = note.checkpoint_text(Checkpoint("hub.example/log", 37, ROOT))
    signed = note.sign(text, "hub.example", hub)
    assert note.open_note(signed, [hub_v]).names == ("hub.example",)

    cosigned = note.add_signature(signed, "node-7", node)
    cosigned = note.add_signature(cosigned, "node-9", other)
    assert cosigned.startswith(signed)
    opened = note.open_note(cosigned, [hub_v, node_v])
    assert opened.names == ("hub.example", "node-7")
    assert [s.name for s in opened.unknown] == ["node-9"]
    # A fresh cosignature by the same key replaces the old line.
    again = note.add_signature(cosigned, "node-7", node)
    assert again.count("\u2014 node-7 ") == 1
    # The hub's own key alone still opens it; the cosignatures stay aside.
    assert [s.name for s in note.open_note(cosigned, [hub_v]).unknown] == ["node-7", "node-9"]


def test_wrong_key_and_tampering() -> None:
    hub, impostor = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    hub_v = note.parse_verifier_key(note.verifier_key("hub", public_raw(hub)))
    signed = note.sign("origin\n1\n" + base64.b64encode(ROOT).decode() + "\n", "hub", hub)
    forged = note.sign("origin\n1\n" + base64.b64encode(ROOT).decode() + "\n", "hub", impostor)
    with pytest.raises(NoteError, match="no verifiable"):
        note.open_note(forged, [hub_v])  # another key hash: an unknown signer
    tampered = signed.replace("origin\n1\n", "origin\n2\n")
    with pytest.raises(NoteError, match="invalid signature"):
        note.open_note(tampered, [hub_v])
    # A known key's bad signature fails the note, even before a good one (as
    # in Go, a key's later repeats are skipped unchecked).
    text, good_line = signed.split("\n\n")
    bad_line = note.signature_line("hub", public_raw(hub), bytes(64))
    with pytest.raises(NoteError, match="invalid signature"):
        note.open_note(text + "\n\n" + bad_line + good_line, [hub_v])
    assert note.open_note(signed + bad_line, [hub_v]).names == ("hub",)
    # The same key name with two different keys is ambiguous only if signed.
    clash = note.Verifier("hub", hub_v.key_hash, public_raw(impostor))
    with pytest.raises(NoteError, match="ambiguous"):
        note.open_note(signed, [hub_v, clash])
    assert note.open_note(signed, [hub_v, hub_v]).names == ("hub",)


def test_duplicate_signatures_count_once() -> None:
    peter = note.parse_verifier_key(PETER_VKEY)
    opened = note.open_note(TEXT + "\n" + PETER_SIG * 3 + ENOCH_SIG * 2, [peter])
    assert opened.names == ("PeterNeumann",)
    assert len(opened.unknown) == 1


@pytest.mark.parametrize(
    "msg",
    [
        TEXT + PETER_SIG,  # no blank line
        TEXT + "\n" + PETER_SIG[:-1],  # no final newline
        TEXT + "\n",  # no signatures
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name"),
        TEXT + "\n" + PETER_SIG.replace("PeterNeumann ", "PeterNeumann"),
        TEXT + "\n" + PETER_SIG.replace("=\n", "\n"),  # unpadded base64
        TEXT + "\n" + "\u2014 PeterNeumann x08go/Y=\n",  # 4 bytes: no signature
        "\x01" + TEXT + "\n" + PETER_SIG,
        "\ud800" + TEXT + "\n" + PETER_SIG,
        TEXT + "\n" + PETER_SIG * 101,
    ],
)
def test_malformed_notes(msg: str) -> None:
    with pytest.raises(NoteError):
        note.open_note(msg, [note.parse_verifier_key(PETER_VKEY)])


def test_malformed_bytes() -> None:
    with pytest.raises(NoteError, match="UTF-8"):
        note.open_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), [])


@pytest.mark.parametrize("text", ["no newline", "a\n\u2014 b\n", "tab\there\n", "\ud800\n"])
def test_sign_refuses_bad_text(text: str) -> None:
    with pytest.raises(NoteError):
        note.sign(text, "hub", Ed25519PrivateKey.generate())


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\tb", "a\u00a0b"])
def test_sign_refuses_bad_names(name: str) -> None:
    with pytest.raises(NoteError):
        note.sign("x\n", name, Ed25519PrivateKey.generate())


def test_signature_line_takes_key_or_hash() -> None:
    v = note.parse_verifier_key(PETER_VKEY)
    sig = base64.b64decode(PETER_SIG.split()[-1])[4:]
    assert note.signature_line(v.name, v.public_raw, sig) == PETER_SIG
    assert note.signature_line(v.name, v.key_hash, sig) == PETER_SIG
    with pytest.raises(NoteError):
        note.signature_line(v.name, b"abc", sig)


def test_checkpoint_round_trip() -> None:
    root_b64 = base64.b64encode(ROOT).decode()
    cp = Checkpoint("hub.example/signals", 37, ROOT, ("ext one", "ext two"))
    text = note.checkpoint_text(cp)
    assert text == f"hub.example/signals\n37\n{root_b64}\next one\next two\n"
    assert note.parse_checkpoint(text) == cp
    assert note.parse_checkpoint(f"o\n0\n{root_b64}\n") == Checkpoint("o", 0, ROOT)


@pytest.mark.parametrize(
    "text",
    [
        "o\n1\n{r}",  # no final newline
        "o\n1\n",
        "\n1\n{r}\n",
        "o\n01\n{r}\n",
        "o\n-1\n{r}\n",
        "o\n+1\n{r}\n",
        "o\n 1\n{r}\n",
        "o\n\u0661\n{r}\n",  # a non-ASCII digit
        "o\n9223372036854775808\n{r}\n",
        "o\n" + "1" * 5000 + "\n{r}\n",
        "o\n1\n{r}=\n",
        "o\n1\nAAAA\n",
        "o\n1\n{r}\n\n",  # an empty extension line
        "o\n1\n{r}\n\u2014 ext\n",
    ],
)
def test_bad_checkpoints(text: str) -> None:
    with pytest.raises(NoteError):
        note.parse_checkpoint(text.replace("{r}", base64.b64encode(ROOT).decode()))


@pytest.mark.parametrize(
    "cp",
    [
        Checkpoint("", 1, ROOT),
        Checkpoint("a\nb", 1, ROOT),
        Checkpoint("o", -1, ROOT),
        Checkpoint("o", 1, ROOT[:31]),
        Checkpoint("o", 1, ROOT, ("",)),
    ],
)
def test_checkpoint_text_refuses(cp: Checkpoint) -> None:
    with pytest.raises(NoteError):
        note.checkpoint_text(cp)
