"""What both command lines share: one-sentence errors, help with examples, settings.

Every failure ends as one line ``<prog>: <sentence>`` on stderr and a non-zero
exit; ``--debug`` adds the traceback. Argument errors too: argparse's usage dump
is replaced by one sentence that points at ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

from ..errors import ClientError
from ..hub import RetryPolicy

__all__ = ["Parser", "UsageError", "fail_line", "retry_policy", "run_command", "sentence"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(ClientError):
    """The command line itself is wrong (exit 2)."""


class Parser(argparse.ArgumentParser):
    """argparse, but an error is one sentence, and help keeps our line breaks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {sentence(message)} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USAGE)


def sentence(text: str) -> str:
    """One line, capital-free start kept, ending with a full stop."""
    text = " ".join(str(text).split())
    if not text:
        text = "failed"
    if not text.endswith((".", "!", "?", ")")):
        text += "."
    return text


def fail_line(prog: str, text: str) -> None:
    sys.stderr.write(f"{prog}: {sentence(text)}\n")


def _env_number(name: str, default: float, kind: Callable[[str], float]) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ClientError(f"{name} must be a number, not {raw!r}") from None
    if value < 0:
        raise ClientError(f"{name} must not be negative")
    return value


def retry_policy(attempts: int = 5, max_delay: float = 30.0) -> RetryPolicy:
    """Defaults, overridden by HONEYMESH_RETRY_ATTEMPTS / _BASE_DELAY / _MAX_DELAY."""
    return RetryPolicy(
        attempts=max(1, int(_env_number("HONEYMESH_RETRY_ATTEMPTS", attempts, int))),
        base_delay=_env_number("HONEYMESH_RETRY_BASE_DELAY", 0.5, float),
        max_delay=_env_number("HONEYMESH_RETRY_MAX_DELAY", max_delay, float),
    )


def run_command(prog: str, debug: bool, command: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run an async command; turn every failure into one sentence and an exit code."""
    try:
        return asyncio.run(command())
    except KeyboardInterrupt:
        fail_line(prog, "interrupted")
        return 130
    except UsageError as exc:
        if debug:
            traceback.print_exc()
        fail_line(prog, f"{exc} (see {prog} --help)")
        return EXIT_USAGE
    except ClientError as exc:
        if debug:
            traceback.print_exc()
        fail_line(prog, str(exc))
        return EXIT_FAILURE
    except PermissionError as exc:
        if debug:
            traceback.print_exc()
        fail_line(prog, str(exc) if exc.filename is None else f"permission denied: {exc.filename}")
        return EXIT_FAILURE
    except OSError as exc:
        if debug:
            traceback.print_exc()
        where = f" ({exc.filename})" if exc.filename else ""
        fail_line(prog, f"{exc.strerror or exc}{where}")
        return EXIT_FAILURE
    except Exception as exc:
        if debug:
            traceback.print_exc()
        fail_line(
            prog,
            f"unexpected error ({type(exc).__name__}: {exc}); run again with --debug for details",
        )
        return EXIT_FAILURE
