"""`keygen` and `enroll`: the node's key, and its enrollment with a hub."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ....errors import ClientError, HubError
from ....feedstate import FeedState, atomic_write, pin_log_key
from ....hub import HubClient
from ....protocol.keys import NodeKey
from ...common import UsageError, retry_policy
from ..home import PROG, home_of, note


async def cmd_keygen(args: Any) -> int:
    home = home_of(args)
    home.ensure()
    key = NodeKey.generate()
    try:
        key.save(home.key_path, force=args.force)
    except FileExistsError:
        raise ClientError(
            f"a key already exists at {home.key_path}; pass --force to replace it "
            "(the node must then enroll again)"
        ) from None
    if args.force and home.node_path.exists():
        home.node_path.unlink()
        note(f"{PROG}: the previous enrollment belonged to the old key; enroll again.")
    print(f"keyid {key.keyid}")
    print(f"public_key {key.public_b64}")
    print(f"key file {home.key_path} (mode 0600)")
    return 0


def _read_token(args: Any) -> str:
    if args.token and args.token_file:
        raise UsageError("give --token or --token-file, not both")
    if args.token:
        return str(args.token).strip()
    if not args.token_file:
        raise UsageError("enroll needs --token TOKEN or --token-file FILE ('-' for stdin)")
    if args.token_file == "-":  # noqa: S105 (a file name, not a secret)
        text = sys.stdin.readline()
    else:
        try:
            text = Path(args.token_file).read_text()
        except OSError as exc:
            raise ClientError(f"cannot read {args.token_file}: {exc.strerror}") from None
    token = text.strip()
    if not token:
        raise ClientError("the token file is empty")
    return token


async def cmd_enroll(args: Any) -> int:
    home = home_of(args)
    hub = args.hub or os.environ.get("HONEYMESH_HUB_URL", "").strip()
    if not hub:
        raise UsageError("enroll needs --hub URL (or HONEYMESH_HUB_URL)")
    token = _read_token(args)
    home.ensure()
    if not home.key_path.exists():
        NodeKey.generate().save(home.key_path)
        note(f"{PROG}: made a new key at {home.key_path}.")
    key = home.key()
    labels = parse_labels(args.label)
    name = args.name or socket.gethostname()
    async with HubClient(hub, key=key, retry=retry_policy()) as client:
        try:
            result = await client.enroll(token, name, labels)
        except HubError as exc:
            if exc.code != "conflict":
                raise
            # A retry after a lost answer: the first try may have enrolled us already.
            try:
                me = await client.node_self()
            except HubError:
                raise exc from None
            result = {"node_id": me["node_id"], "tenant_id": me["tenant_id"], "keyid": key.keyid}
        # The transparency log's key is pinned now (PROTOCOL.md 12 r2): every later
        # checkpoint must be signed by it. If the hub cannot say now, the first pull pins.
        fresh = FeedState()
        with contextlib.suppress(ClientError):
            await pin_log_key(client, fresh)
    enrollment = {
        "hub": client.base_url + urlsplit(hub).path.rstrip("/"),
        "node_id": result["node_id"],
        "tenant_id": result["tenant_id"],
        "keyid": result.get("keyid", key.keyid),
        "name": name,
        "enrolled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write(home.node_path, (json.dumps(enrollment, indent=2) + "\n").encode(), 0o600)
    # A cursor is bound to a node: a new enrollment starts the feed afresh.
    with contextlib.suppress(FileNotFoundError):
        home.feed_path.unlink()
    if fresh.log_key is not None:
        fresh.save(home.feed_path)
    print(f"enrolled node {result['node_id']} in tenant {result['tenant_id']} at {hub}")
    return 0


def parse_labels(items: Sequence[str] | None) -> dict[str, str]:
    """``--label NAME=VALUE`` flags as a mapping; UsageError for one without ``=``."""
    labels: dict[str, str] = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise UsageError(f"--label takes NAME=VALUE, not {item!r}")
        labels[name] = value
    return labels
