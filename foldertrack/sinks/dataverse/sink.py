"""The Dataverse (Dynamics 365) sink: each tracked mail as one ``email`` activity, exactly once.

Idempotency comes from the row id: ``activityid = uuid5(ACTIVITY_NAMESPACE, key)``. An upsert first tries
to create the row (``PATCH emails(id)`` with ``If-None-Match: *``, activity parties and attachments deep
inserted, so the row appears whole or not at all); 412 means it is already there, so the sink reads it and
sends only what differs (``If-Match: *``, so a row deleted meanwhile is never re-created by an update).
Re-linking is an update of the regarding; untrack clears it; delete removes the row.

Dataverse lets the Web API update a Completed (received/sent) email — "Set Regarding" on a received mail
is exactly that — so changes are applied in place, without reopening the email (H2's simulator agrees;
no Microsoft documentation of a rule refusing it was found).

Reference: https://learn.microsoft.com/power-apps/developer/data-platform/webapi/perform-conditional-operations-using-web-api
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from foldertrack.crm.client import DataverseClient
from foldertrack.crm.connect import connect
from foldertrack.crm.names import EntityNames, regarding_property
from foldertrack.errors import PermanentSinkError, TransientSinkError
from foldertrack.model import Activity
from foldertrack.sinks.base import ActivitySink, UpsertOutcome
from foldertrack.sinks.dataverse.payload import EmailRow, activity_id, attachment_body, email_row

log = logging.getLogger("foldertrack.sinks.dataverse")

#: tables an email's activity party can point at (others are sent as a plain address)
PARTY_TABLES = frozenset({"account", "contact", "lead", "systemuser", "queue"})
#: Dataverse ObjectDoesNotExist
OBJECT_DOES_NOT_EXIST = "0x80040217"
_LOOKUP = "@Microsoft.Dynamics.CRM.lookuplogicalname"
_ANNOTATIONS = {"Prefer": 'odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname"'}
_COMPARED = ("subject", "description", "messageid", "sender", "torecipients", "directioncode", "actualend")
_READ = (
    "emails({id})?$select="
    + ",".join((*_COMPARED, "notifications", "statecode", "statuscode", "_regardingobjectid_value"))
    + "&$expand=email_activity_parties($select=participationtypemask,addressused,_partyid_value),"
    "email_activity_mime_attachment($select=activitymimeattachmentid)"
)


class DataverseActivitySink(ActivitySink):
    """Email activities in Dataverse through the Web API (``sink.name = "dataverse"``)."""

    name = "dataverse"
    shares_state_database = False

    def __init__(
        self,
        client: DataverseClient,
        *,
        names: EntityNames | None = None,
        attachments_over_limit: str = "footer",
        max_concurrency: int = 8,
    ) -> None:
        self.client = client
        self.names = names or EntityNames()
        self.attachments_over_limit = attachments_over_limit
        self.max_concurrency = max_concurrency

    @classmethod
    def create(cls, config: Any, engine: Any = None) -> DataverseActivitySink:
        """Plug-in factory: ``[dataverse]`` settings; ConfigError when something needed is missing."""
        dv = config.dataverse
        return cls(
            connect(config),
            names=EntityNames(dv.entity_sets),
            attachments_over_limit=dv.attachments_over_limit,
            max_concurrency=dv.max_concurrency,
        )

    # -- the sink contract -------------------------------------------------------------------------------

    def upsert(self, activity: Activity, conn: Any = None) -> UpsertOutcome:
        row = self._row(activity)
        body = row.create_body(self.names, complete=True)
        if row.attachments:
            body["email_activity_mime_attachment"] = [
                _without_parent(attachment_body(row.id, aid, a, activity.key)) for aid, a in row.attachments
            ]
        created = self.client.request(
            "PATCH", f"emails({row.id})", json=body, headers={"If-None-Match": "*"}, expect=(412,)
        )
        if created.status_code != 412:
            return "created"
        current = self.client.get_json(_READ.format(id=row.id), headers=_ANNOTATIONS)
        if current is None:
            raise TransientSinkError(f"Dataverse email {row.id} was deleted while being updated; will retry")
        changes = self._changes(row, current)
        if changes:
            self._update(row.id, changes)
        uploaded = self._sync_attachments(row, current, activity.key)
        return "updated" if changes or uploaded else "unchanged"

    def untrack(self, key: str, conn: Any = None) -> bool:
        row_id = activity_id(key)
        current = self.client.get_json(
            f"emails({row_id})?$select=_regardingobjectid_value", headers=_ANNOTATIONS
        )
        if current is None:
            return False
        logical = current.get(f"_regardingobjectid_value{_LOOKUP}")
        if current.get("_regardingobjectid_value") and logical:
            self._update(row_id, {f"{regarding_property(logical)}@odata.bind": None})
        return True

    def delete(self, key: str, conn: Any = None) -> bool:
        response = self.client.request("DELETE", f"emails({activity_id(key)})", expect=(404,))
        return response.status_code != 404

    def close(self) -> None:
        self.client.close()

    # -- helpers ----------------------------------------------------------------------------------------

    def _row(self, activity: Activity) -> EmailRow:
        row = email_row(activity, over_limit=self.attachments_over_limit)
        parties = tuple(
            (mask, logical, rid, address) if logical in PARTY_TABLES else (mask, None, None, address)
            for mask, logical, rid, address in row.parties
        )
        return EmailRow(row.id, row.fields, row.regarding, parties, row.attachments, row.final_state)

    def _update(self, row_id: str, changes: dict[str, Any]) -> None:
        try:
            self.client.request("PATCH", f"emails({row_id})", json=changes, headers={"If-Match": "*"})
        except PermanentSinkError as error:
            # 404: the email itself is gone (deleted meanwhile: a retry creates it again), or a record the
            # change binds to does not exist (a real rejection). Ask Dataverse which, instead of reading
            # its message (which always names the email's URL).
            if (
                error.code == OBJECT_DOES_NOT_EXIST
                and self.client.get_json(f"emails({row_id})?$select=activityid") is None
            ):
                raise TransientSinkError(
                    f"Dataverse email {row_id} was deleted while being updated; will retry"
                ) from None
            raise

    def _changes(self, row: EmailRow, current: dict[str, Any]) -> dict[str, Any]:
        """The columns, regarding, parties and state that differ from ``current`` (a GET of the row)."""
        changes: dict[str, Any] = {}
        for column in _COMPARED:
            wanted = row.fields.get(column)
            if not _same(column, wanted, current.get(column)):
                changes[column] = wanted
        if (row.fields.get("notifications") or 0) != (current.get("notifications") or 0):
            changes["notifications"] = row.fields.get("notifications") or 0
        have_id = (current.get("_regardingobjectid_value") or "").lower() or None
        want_id = row.regarding[1].lower() if row.regarding else None
        if have_id != want_id:
            if row.regarding:
                changes[f"{regarding_property(row.regarding[0])}@odata.bind"] = self.names.bind(
                    *row.regarding
                )
            else:
                logical = current.get(f"_regardingobjectid_value{_LOOKUP}") or "account"
                changes[f"{regarding_property(logical)}@odata.bind"] = None
        have_parties = {
            (
                p.get("participationtypemask"),
                (p.get("_partyid_value") or "").lower() or None,
                (p.get("addressused") or "").lower(),
            )
            for p in current.get("email_activity_parties") or []
        }
        if have_parties != row.party_set():
            changes["email_activity_parties"] = row.parties_body(self.names)
        if (current.get("statecode"), current.get("statuscode")) != row.final_state:
            changes["statecode"], changes["statuscode"] = row.final_state
        return changes

    def _sync_attachments(self, row: EmailRow, current: dict[str, Any], key: str) -> bool:
        """Upload missing attachments, remove ones no longer wanted; True when anything changed."""
        have = {
            (a.get("activitymimeattachmentid") or "").lower()
            for a in current.get("email_activity_mime_attachment") or []
        }
        wanted = {aid: a for aid, a in row.attachments}
        changed = False
        for aid, attachment in wanted.items():
            if aid not in have:
                self.client.request(
                    "POST",
                    "activitymimeattachments",
                    json=attachment_body(row.id, aid, attachment, key),
                    expect=(412,),
                )
                changed = True
        for aid in sorted(have - set(wanted)):
            self.client.request("DELETE", f"activitymimeattachments({aid})", expect=(404,))
            changed = True
        return changed


def _without_parent(body: dict[str, Any]) -> dict[str, Any]:
    """An attachment deep-inserted with its email: the parent is implied by the nesting."""
    return {k: v for k, v in body.items() if not k.startswith("objectid_")}


def _same(column: str, wanted: Any, have: Any) -> bool:
    if column == "actualend" and wanted and have:
        return _instant(wanted) == _instant(have)
    if isinstance(wanted, str) or isinstance(have, str):
        return (wanted or "") == (have or "")
    return wanted == have


def _instant(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
