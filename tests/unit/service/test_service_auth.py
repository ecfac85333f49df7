"""Roles and rights, bearer tokens, and who may use the unix socket."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pyhv.errors import AuthenticationError, PermissionDenied
from pyhv.service.auth import (
    LocalAuthenticator,
    Principal,
    Right,
    Role,
    TokenAuthenticator,
    check_right,
    peer_allowed,
)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.READER, {Right.READ}),
        (Role.OPERATOR, {Right.READ, Right.OPERATE}),
        (Role.ADMIN, {Right.READ, Right.OPERATE, Right.ADMIN}),
    ],
)
def test_role_rights(role: Role, allowed: set[Right]) -> None:
    who = Principal("u", role)
    for right in Right:
        if right in allowed:
            check_right(who, right)
        else:
            with pytest.raises(PermissionDenied, match=f"role {role.value}"):
                check_right(who, right)


def write_tokens(path: Path, *entries: tuple[str, str, str]) -> None:
    tokens = [{"name": n, "role": r, "token": t} for n, r, t in entries]
    path.write_text(json.dumps({"tokens": tokens}))


def test_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    write_tokens(path, ("ci", "reader", "secret-1"), ("ops", "operator", "secret-2"))
    auth = TokenAuthenticator(path)
    assert auth.authenticate("Bearer secret-1") == Principal("ci", Role.READER)
    assert auth.authenticate("bearer secret-2") == Principal("ops", Role.OPERATOR)
    for header in (None, "", "Bearer", "Basic secret-1", "Bearer nope"):
        with pytest.raises(AuthenticationError):
            auth.authenticate(header)


def test_tokens_reload_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    auth = TokenAuthenticator(path)
    with pytest.raises(AuthenticationError, match="unknown bearer token"):
        auth.authenticate("Bearer x")
    write_tokens(path, ("a", "admin", "x"))
    assert auth.authenticate("Bearer x").role == Role.ADMIN
    write_tokens(path, ("a", "admin", "yy"))
    os.utime(path, ns=(1, 1))
    with pytest.raises(AuthenticationError):
        auth.authenticate("Bearer x")


def test_broken_tokens_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text('{"tokens": [{"name": "a", "role": "root", "token": "x"}]}')
    with pytest.raises(AuthenticationError, match="not a valid tokens file") as err:
        TokenAuthenticator(path).authenticate("Bearer x")
    assert "\n" not in str(err.value)


def test_local_callers_are_admins() -> None:
    assert LocalAuthenticator().authenticate(None).role == Role.ADMIN


@pytest.mark.parametrize(
    ("uid", "groups", "pyhv_gid", "ok"),
    [
        (0, {0}, None, True),
        (1000, {1000}, None, False),
        (1000, {1000, 990}, 990, True),
        (1000, {1000}, 990, False),
        (500, {500}, None, True),  # pyhvd's own user
    ],
)
def test_peer_allowed(uid: int, groups: set[int], pyhv_gid: int | None, ok: bool) -> None:
    assert peer_allowed(uid, 500, groups, pyhv_gid) is ok
