"""Who may do what: peer credentials on the unix socket, bearer tokens with roles on TCP.

The unix socket admits root, pyhvd's own user and members of the group ``pyhv`` (checked with
SO_PEERCRED when a connection arrives, beside the socket file's mode 0660). On TCP every request
carries ``Authorization: Bearer <token>``; ``PYHV_HOME/tokens.json`` names each token's role:

    {"tokens": [{"name": "ci", "role": "reader", "token": "…"}]}
"""

from __future__ import annotations

import asyncio
import enum
import grp
import hmac
import json
import logging
import os
import pwd
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pyhv.errors import AuthenticationError, ConfigError, PermissionDenied
from pyhv.service.api.errors import PROBLEM_JSON, problem

log = logging.getLogger(__name__)

PYHV_GROUP = "pyhv"


class Right(enum.IntEnum):
    """What a route needs; a role holds every right up to its own."""

    READ = 1
    OPERATE = 2  # power, console, exec, checkpoints, job cancellation
    ADMIN = 3  # create, change, delete


class Role(enum.StrEnum):
    READER = "reader"
    OPERATOR = "operator"
    ADMIN = "admin"


ROLE_RIGHTS = {Role.READER: Right.READ, Role.OPERATOR: Right.OPERATE, Role.ADMIN: Right.ADMIN}


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


def check_right(principal: Principal, right: Right) -> None:
    """:raises PermissionDenied: when the principal's role does not include ``right``."""
    if ROLE_RIGHTS[principal.role] < right:
        raise PermissionDenied(
            f"{principal.name} has role {principal.role.value}, "
            f"which may not {right.name.lower()}: ask an admin for a token with that right"
        )


class _TokenEntry(BaseModel):
    name: str
    role: Role
    token: str


class _TokenFile(BaseModel):
    tokens: list[_TokenEntry]


class Authenticator(Protocol):
    def authenticate(self, authorization: str | None) -> Principal: ...


class LocalAuthenticator:
    """Callers on the unix socket passed the peer check at connect time and act as admin."""

    def authenticate(self, authorization: str | None) -> Principal:
        return Principal("local", Role.ADMIN)


class TokenAuthenticator:
    """Tokens from tokens.json, re-read when the file changes: revoking needs no restart.

    Every request stats the file (a revoked token fails on the very next request); the path
    string and the encoded tokens are kept ready because this runs on every TCP request.
    """

    def __init__(self, path: Path) -> None:
        self._path = str(path)
        self._stamp: tuple[int, int] | None = None
        self._tokens: list[tuple[bytes, Principal]] = []

    def _reload(self) -> None:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            self._stamp, self._tokens = None, []
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            entries = load_tokens(Path(self._path))
        except ConfigError as err:
            # The server's file is broken, not the caller's request: nobody gets in.
            log.error("%s", err)
            raise AuthenticationError(f"pyhvd cannot check tokens: {err}") from err
        self._tokens = [(e.token.encode(), Principal(e.name, e.role)) for e in entries]
        self._stamp = stamp

    def authenticate(self, authorization: str | None) -> Principal:
        """:raises AuthenticationError: without a bearer token or with an unknown one."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("no bearer token: send 'Authorization: Bearer <token>'")
        self._reload()
        given = token.strip().encode()
        for known, principal in self._tokens:
            if hmac.compare_digest(known, given):
                return principal
        raise AuthenticationError("unknown bearer token: check the token or ask an admin for one")


def load_tokens(path: Path) -> list[_TokenEntry]:
    """:raises ConfigError: when tokens.json is not valid."""
    try:
        return _TokenFile.model_validate(json.loads(path.read_text())).tokens
    except (ValueError, ValidationError) as err:
        raise ConfigError(f"{path}: not a valid tokens file: {_first_line(err)}") from err


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def peer_allowed(uid: int, own_uid: int, group_ids: set[int], pyhv_gid: int | None) -> bool:
    return uid in (0, own_uid) or (pyhv_gid is not None and pyhv_gid in group_ids)


def _pyhv_gid() -> int | None:
    try:
        return grp.getgrnam(PYHV_GROUP).gr_gid
    except KeyError:
        return None


def _group_ids(uid: int, gid: int) -> set[int]:
    try:
        return set(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    except KeyError:
        return {gid}


def peer_of(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def _forbidden_response() -> bytes:
    body = json.dumps(
        problem(403, "forbidden", f"only root and members of group {PYHV_GROUP} may use pyhvd")
    ).encode()
    head = (
        f"HTTP/1.1 403 Forbidden\r\ncontent-type: {PROBLEM_JSON}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class PeerCheckedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools: about twice h11's speed), refusing unix-socket
    peers that are not root, pyhvd's user or in ``pyhv``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._denied = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is None or sock.family != socket.AF_UNIX:
            return
        _, uid, gid = peer_of(sock)
        own_uid = os.geteuid()
        if uid in (0, own_uid):
            return  # admitted without the group lookups, which read /etc/passwd and /etc/group
        self._denied = not peer_allowed(uid, own_uid, _group_ids(uid, gid), _pyhv_gid())

    def data_received(self, data: bytes) -> None:
        if self._denied:
            self.transport.write(_forbidden_response())
            self.transport.close()
            return
        super().data_received(data)
