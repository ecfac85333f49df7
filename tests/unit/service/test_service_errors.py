"""The one error table: every PyhvError class has a status and a code, and codes map back."""

from __future__ import annotations

import pytest

from pyhv import errors
from pyhv.service.api.errors import problem
from pyhv.service.error_codes import ERRORS, error_class, status_and_code


def all_error_classes() -> list[type[errors.PyhvError]]:
    todo, found = [errors.PyhvError], []
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return [c for c in found if c.__module__ == "pyhv.errors"]


def test_subclasses_come_before_their_parents() -> None:
    classes = [cls for cls, _, _ in ERRORS]
    for i, cls in enumerate(classes):
        for later in classes[i + 1 :]:
            assert not issubclass(later, cls), f"{later} is shadowed by {cls}"


def test_codes_are_unique_and_round_trip() -> None:
    codes = [code for _, _, code in ERRORS]
    assert len(codes) == len(set(codes))
    for cls, _, code in ERRORS:
        assert error_class(code) is cls


@pytest.mark.parametrize("cls", all_error_classes())
def test_every_error_class_has_a_row(cls: type[errors.PyhvError]) -> None:
    status, code = status_and_code(cls("x"))
    assert any(row_cls is cls for row_cls, _, _ in ERRORS), f"{cls.__name__} has no own row"
    assert 400 <= status < 600 and code


def test_expected_statuses() -> None:
    assert status_and_code(errors.ConflictError("x")) == (409, "conflict")
    assert status_and_code(errors.NotFoundError("x")) == (404, "not-found")
    assert status_and_code(errors.AuthenticationError("x")) == (401, "unauthenticated")
    assert status_and_code(errors.PermissionDenied("x")) == (403, "forbidden")
    assert status_and_code(errors.ConfigError("x"))[0] == 422


def test_unknown_codes_become_api_errors() -> None:
    assert error_class("from-a-newer-pyhvd") is errors.ApiError
    assert error_class("invalid-request") is errors.UsageError


def test_problem_detail_is_one_line() -> None:
    body = problem(409, "conflict", "two\nlines  here")
    assert body == {
        "type": "urn:pyhv:error:conflict",
        "title": "conflict",
        "status": 409,
        "detail": "two lines here",
        "code": "conflict",
    }
