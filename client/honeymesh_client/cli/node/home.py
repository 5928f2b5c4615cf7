"""The node's home: where its key, enrollment, spool and feed state live.

``--home``, else ``HONEYMESH_NODE_HOME``, else ``~/.honeymesh``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ClientError
from ...hub import HubClient
from ...protocol.keys import NodeKey
from ...spool import Spool
from ..common import retry_policy

PROG = "honeymesh-node"
KEY_FILE = "node.key"
NODE_FILE = "node.json"
SPOOL_FILE = "spool.sqlite"
FEED_FILE = "feed.json"
HUB_ADDRESSES_FILE = "hub-addresses.json"  # the hub's last resolved addresses


@dataclass(frozen=True, slots=True)
class Home:
    path: Path

    @property
    def key_path(self) -> Path:
        return self.path / KEY_FILE

    @property
    def node_path(self) -> Path:
        return self.path / NODE_FILE

    @property
    def spool_path(self) -> Path:
        return self.path / SPOOL_FILE

    @property
    def feed_path(self) -> Path:
        return self.path / FEED_FILE

    @property
    def hub_addresses_path(self) -> Path:
        return self.path / HUB_ADDRESSES_FILE

    def ensure(self) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)

    def key(self) -> NodeKey:
        try:
            return NodeKey.load(self.key_path)
        except FileNotFoundError:
            raise ClientError(
                f"no node key in {self.path}; run `{PROG} keygen` first (or pass --home)"
            ) from None
        except ValueError as exc:
            raise ClientError(str(exc)) from None

    def enrollment(self) -> dict[str, Any]:
        try:
            data = json.loads(self.node_path.read_text())
        except FileNotFoundError:
            raise ClientError(
                f"this node is not enrolled (no {self.node_path}); run `{PROG} enroll` first"
            ) from None
        except (OSError, ValueError):
            raise ClientError(f"{self.node_path} is not readable JSON; enroll again") from None
        if not isinstance(data, dict) or not data.get("node_id"):
            raise ClientError(f"{self.node_path} holds no enrollment; enroll again")
        return data

    def hub_url(self, enrollment: dict[str, Any]) -> str:
        return os.environ.get("HONEYMESH_HUB_URL", "").strip() or str(enrollment.get("hub", ""))

    def spool(self) -> Spool:
        self.ensure()
        return Spool(self.spool_path)


def home_of(args: Any) -> Home:
    """The home the command line names (``--home``, the environment, the default)."""
    raw = args.home or os.environ.get("HONEYMESH_NODE_HOME", "").strip() or "~/.honeymesh"
    return Home(Path(raw).expanduser())


def note(text: str) -> None:
    """A line for the operator (progress, notes) on stderr; stdout is for scripts."""
    print(text, file=sys.stderr, flush=True)


def hub_client(home: Home, *, attempts: int = 5, max_delay: float = 30.0) -> HubClient:
    """A client for the enrolled hub, signing with the node's key."""
    enrollment = home.enrollment()
    url = home.hub_url(enrollment)
    if not url:
        raise ClientError(f"no hub URL in {home.node_path}; set HONEYMESH_HUB_URL or enroll again")
    return HubClient(
        url,
        key=home.key(),
        retry=retry_policy(attempts, max_delay),
        on_retry=lambda m: note(f"{PROG}: {m}"),
    )
