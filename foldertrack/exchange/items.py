"""Fetch the properties we store for a batch of items with one GetItem per chunk.

A whole request can fail because of one item (the server chokes on it: a SOAP ``ErrorInternalServerError``,
an HTTP 500, an unparseable or oversized answer). Such a failure is bisected: the chunk is split in halves
until the failing items stand alone, and each of those gets an :class:`ItemFetchFailed` as its result,
which the synchroniser counts against that item (dead letter after ``max_attempts``) while the rest of the
folder moves on. Failures that are not about an item (throttling, the mailbox or server unreachable, the
request deadline) are raised as they are, for the dispatcher to retry the whole catch-up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import requests
from exchangelib import Account, Message
from exchangelib.errors import (
    CASError,
    ErrorInternalServerError,
    ErrorInternalServerTransientError,
    ErrorItemNotFound,
    RedirectError,
    ResponseMessageError,
    TransportError,
    UnauthorizedError,
)
from exchangelib.fields import FieldPath
from exchangelib.items import ID_ONLY, Item
from exchangelib.services import GetItem

from foldertrack.exchange.transport import UnusableResponse, response_problem

#: Message properties an activity is built from.
ITEM_FIELDS: tuple[str, ...] = (
    "message_id",
    "conversation_id",
    "subject",
    "text_body",
    "body",
    "sender",
    "author",
    "to_recipients",
    "cc_recipients",
    "bcc_recipients",
    "datetime_sent",
    "datetime_received",
    "attachments",
    "item_class",
    "size",
    "last_modified_time",  # when the copy arrived in its folder (a move or copy sets it): see sync._track
)
_FIELD_PATHS = frozenset(FieldPath(field=Message.get_field_by_fieldname(name)) for name in ITEM_FIELDS)
GET_ITEM_CHUNK = 50


class ItemFetchFailed(Exception):
    """GetItem for this one item failed as a whole request (isolated by bisecting its batch)."""

    def __init__(self, cause: BaseException):
        from foldertrack.retry import describe

        super().__init__(f"GetItem of this item alone fails: {describe(response_problem(cause) or cause)}")
        self.cause = cause


def fetch_items(
    account: Account, item_ids: Sequence[str], *, probe: Callable[[], str | None] | None = None
) -> dict[str, Item | Exception]:
    """Item id → the item, or the per-item error: what EWS returned for it (e.g. ``ErrorItemNotFound``
    when the item moved on since the sync saw it) or :class:`ItemFetchFailed` when only a request for it
    alone fails. A failure that is not about the items raises.

    When no request succeeded at all, ``probe()`` names an item known to exist (or to have existed), which
    is asked for once: if the server cannot answer that either, the server is failing, not the items, and
    the first failure is raised rather than counted against every item."""
    results: dict[str, Item | Exception] = {}
    ids = list(dict.fromkeys(item_ids))
    succeeded = False
    first_failure: BaseException | None = None
    for start in range(0, len(ids), GET_ITEM_CHUNK):
        ok, failure = _fetch(account, ids[start : start + GET_ITEM_CHUNK], results)
        succeeded = succeeded or ok
        first_failure = first_failure or failure
    blame_the_server = first_failure is not None and not succeeded
    if blame_the_server and not _server_answers(account, probe() if probe is not None else None):
        raise first_failure
    return results


def still_there(account: Account, item_ids: Sequence[str]) -> set[str]:
    """Which of ``item_ids`` still resolve (an item that moved has a new id: its old one is gone).
    An answer that is not "not found" counts as there (the cautious side)."""
    ids = list(dict.fromkeys(item_ids))
    found: set[str] = set()
    for start in range(0, len(ids), GET_ITEM_CHUNK):
        chunk = ids[start : start + GET_ITEM_CHUNK]
        service = GetItem(account=account, chunk_size=GET_ITEM_CHUNK)
        answers = service.call(items=[(i, None) for i in chunk], additional_fields=None, shape=ID_ONLY)
        for item_id, answer in zip(chunk, answers, strict=True):
            if not isinstance(answer, ErrorItemNotFound):
                found.add(item_id)
    return found


def _get(account: Account, ids: list[str]) -> list[Item | Exception]:
    service = GetItem(account=account, chunk_size=GET_ITEM_CHUNK)
    return list(service.call(items=[(i, None) for i in ids], additional_fields=_FIELD_PATHS, shape=ID_ONLY))


def _fetch(
    account: Account, ids: list[str], results: dict[str, Item | Exception]
) -> tuple[bool, BaseException | None]:
    """Fetch ``ids`` into ``results``, bisecting on an item-shaped failure; (any request succeeded, the
    first isolated failure)."""
    try:
        fetched = _get(account, ids)
    except Exception as exc:
        if not is_item_shaped(exc):
            raise
        if len(ids) == 1:
            return _fetch_alone(account, ids[0], exc, results)
        middle = len(ids) // 2
        left_ok, left_failure = _fetch(account, ids[:middle], results)
        right_ok, right_failure = _fetch(account, ids[middle:], results)
        return left_ok or right_ok, left_failure or right_failure
    for item_id, result in zip(ids, fetched, strict=True):
        results[item_id] = result
    return True, None


def _fetch_alone(
    account: Account, item_id: str, failure: Exception, results: dict[str, Item | Exception]
) -> tuple[bool, BaseException | None]:
    """One more try for an item whose request failed: a passing hiccup (one HTTP 500) is not its fault."""
    try:
        (results[item_id],) = _get(account, [item_id])
    except Exception as exc:
        if not is_item_shaped(exc):
            raise
        results[item_id] = ItemFetchFailed(exc)
        return False, failure
    return True, None


def _server_answers(account: Account, probe_id: str | None) -> bool:
    """True when a GetItem of ``probe_id`` gets a proper answer (even "not found"); no probe: assume so
    (the catch-up's SyncFolderItems was answered a moment ago)."""
    if probe_id is None:
        return True
    try:
        _get(account, [probe_id])
    except Exception:
        return False
    return True


def is_item_shaped(exc: BaseException) -> bool:
    """Could this whole-request failure be caused by one of the items asked for? Throttling, auth,
    mailbox-level errors, an unreachable server and the request deadline are not; a server error, a
    non-SOAP HTTP error, and an answer that is too large or not XML may be."""
    problem = response_problem(exc)
    if problem is not None:
        return isinstance(problem, UnusableResponse)
    if isinstance(exc, (ErrorInternalServerError, ErrorInternalServerTransientError)):
        return True
    if isinstance(exc, (ResponseMessageError, UnauthorizedError, RedirectError, CASError)):
        return False
    if isinstance(exc, TransportError):  # SOAPError, MalformedResponseError, "Unknown failure" (HTTP 500)
        return True
    return not isinstance(exc, (requests.exceptions.RequestException, OSError))


def counts_against_item(exc: BaseException) -> bool:
    """Count this failure against the item (dead letter after ``max_attempts``) rather than retry the whole
    folder: anything permanent, and what the server says about this item only (an internal error, an
    answer too large or not XML). Throttling, an unreachable server or database retry the folder."""
    from foldertrack.retry import is_transient

    if isinstance(exc, ItemFetchFailed) or not is_transient(exc):
        return True
    if isinstance(exc, (ErrorInternalServerError, ErrorInternalServerTransientError)):
        return True
    return isinstance(response_problem(exc), UnusableResponse)
