"""Who may change what when cnnlab is shared: roles, passwords and sign-in throttling.

- **Open** (no password configured): everyone is an editor, as on one's own machine.
- **Protected** (``CNNLAB_EDITOR_PASSWORD`` set): visitors are viewers until they sign
  in with it. Viewers predict on their own uploads and look at runs; they change no
  shared state. ``CNNLAB_VIEWER_PASSWORD`` (optional) asks a password for viewing too.

A password comes from the environment, else from the same key in
``.streamlit/secrets.toml`` (the app's folder, then ``~/.streamlit``). Passwords are
compared in constant time and never shown or logged. The command line is for whoever
runs the machine and does not go through this module.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.errors import CnnlabError

EDITOR_PASSWORD = "CNNLAB_EDITOR_PASSWORD"
VIEWER_PASSWORD = "CNNLAB_VIEWER_PASSWORD"
EDITOR, VIEWER, NOBODY = "editor", "viewer", "nobody"
SECRETS_FILES = (Path(".streamlit/secrets.toml"), Path.home() / ".streamlit/secrets.toml")

# Sign-in throttling: after FREE_ATTEMPTS wrong passwords from one client, each further
# attempt waits twice as long as the last (from BASE_DELAY_S up to MAX_DELAY_S).
FREE_ATTEMPTS = 3
BASE_DELAY_S = 2.0
MAX_DELAY_S = 300.0


def _secret(name: str) -> str:
    value = os.environ.get(name, "")
    if value:
        return value
    for path in SECRETS_FILES:
        try:
            with open(path, "rb") as handle:
                value = tomllib.load(handle).get(name, "")
        except (OSError, tomllib.TOMLDecodeError):
            continue  # no file, or not TOML: Streamlit itself reports a broken one
        if value:
            return str(value)
    return ""


@dataclass(frozen=True)
class Access:
    """The passwords in force (kept out of repr, so they are never printed)."""

    editor_password: str = field(default="", repr=False)
    viewer_password: str = field(default="", repr=False)

    @classmethod
    def configured(cls) -> Access:
        return cls(_secret(EDITOR_PASSWORD), _secret(VIEWER_PASSWORD))

    @property
    def protected(self) -> bool:
        return bool(self.editor_password)

    def starting_role(self) -> str:
        """The role of a visitor who has not signed in."""
        if not self.protected:
            return EDITOR
        return NOBODY if self.viewer_password else VIEWER

    def role_for(self, password: str) -> str | None:
        """The role ``password`` signs in as (editor first), or None when it is wrong."""
        if self.editor_password and _same(password, self.editor_password):
            return EDITOR
        if self.viewer_password and _same(password, self.viewer_password):
            return VIEWER
        return None


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of digests, so neither content nor length leaks."""
    digest = lambda text: hashlib.sha256(text.encode("utf-8")).digest()  # noqa: E731
    return hmac.compare_digest(digest(given), digest(expected))


def can_edit(role: str) -> bool:
    return role == EDITOR


def require_editor(role: str, doing: str) -> None:
    """Raise unless ``role`` may change shared state.

    Raises:
        CnnlabError: "Only editors can ...; sign in ..." for a viewer.
    """
    if not can_edit(role):
        raise CnnlabError(
            f"Only editors can {doing}. Sign in as an editor in the sidebar (ask the "
            "person who runs this cnnlab for the editor password)."
        )


class Throttle:
    """Wrong-password rate limit per client (e.g. an IP address), shared by sessions."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}  # client -> (count, blocked until)

    def wait_s(self, client: str) -> float:
        """Seconds ``client`` must wait before its next attempt (0 = may try now)."""
        with self._lock:
            _, until = self._failures.get(client, (0, 0.0))
        return max(0.0, until - self.clock())

    def failed(self, client: str) -> None:
        with self._lock:
            count, _ = self._failures.get(client, (0, 0.0))
            count += 1
            extra = count - FREE_ATTEMPTS
            delay = min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (extra - 1)) if extra > 0 else 0.0
            self._failures[client] = (count, self.clock() + delay)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


def sign_in(access: Access, throttle: Throttle, client: str, password: str) -> str:
    """The role ``password`` gives, or a CnnlabError that says why not.

    Raises:
        CnnlabError: when ``client`` must still wait after wrong passwords, or the
            password is wrong (which counts against ``client``).
    """
    wait = throttle.wait_s(client)
    if wait > 0:
        raise CnnlabError(f"Too many wrong passwords: try again in {wait:.0f} s.")
    role = access.role_for(password)
    if role is None:
        throttle.failed(client)
        raise CnnlabError("That password is not right. Check it and try again.")
    throttle.succeeded(client)
    return role
