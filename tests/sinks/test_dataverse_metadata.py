"""The sink's column limits and option values are the ones in the CDM metadata (``../shared/dataverse``),
and the Web API names it derives for custom tables follow Dataverse's conventions."""

from __future__ import annotations

import pytest

from foldertrack.crm import metadata as md
from foldertrack.crm.names import EntityNames, pluralise
from foldertrack.model import Activity, RecordRef
from foldertrack.sinks.dataverse.payload import email_row


def test_every_length_matches_the_cdm_metadata(dataverse_metadata):
    for (entity, column), limit in md.MAX_LENGTH.items():
        assert dataverse_metadata[entity].columns[column].max_length == limit, f"{entity}.{column}"


def test_state_and_status_values_match_the_cdm_metadata(dataverse_metadata):
    email = dataverse_metadata["email"]
    state_of = dict(email.columns["statuscode"].state_of)

    assert state_of[md.EMAIL_STATUS_RECEIVED] == md.EMAIL_STATE_COMPLETED
    assert state_of[md.EMAIL_STATUS_SENT] == md.EMAIL_STATE_COMPLETED
    assert state_of[md.EMAIL_STATUS_DRAFT] == md.EMAIL_STATE_OPEN
    assert md.EMAIL_NOTIFICATION_TRUNCATED_BODY in email.columns["notifications"].options
    assert set(md.PARTICIPATION.values()) <= set(
        dataverse_metadata["activityparty"].columns["participationtypemask"].options
    )


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [("abc", 5, "abc"), ("abcdef", 3, "abc"), ("a😀b", 2, "a"), ("a😀b", 3, "a😀"), ("ééé", 2, "éé")],
)
def test_cut_counts_utf16_code_units_and_never_splits_a_pair(text, limit, expected):
    assert md.cut(text, limit) == expected


def test_custom_tables_get_their_entity_set_and_navigation_property():
    activity = Activity(
        key="<k@x>",
        mailbox="m@x",
        folder_id="f",
        folder_path="Inbox/Projects/Apollo",
        message_id="<k@x>",
        subject="s",
        direction="incoming",
        regarding=RecordRef.parse("new_project:5b3c1f5e-0000-4000-8000-000000000001"),
    )
    row = email_row(activity)

    default = row.create_body(EntityNames(), complete=True)
    configured = row.create_body(EntityNames((("new_project", "new_projectses"),)), complete=True)

    key = "regardingobjectid_new_project_email@odata.bind"
    assert default[key] == "/new_projects(5b3c1f5e-0000-4000-8000-000000000001)"
    assert configured[key] == "/new_projectses(5b3c1f5e-0000-4000-8000-000000000001)"
    assert [pluralise(n) for n in ("cr1_category", "new_box", "new_bus", "new_day")] == [
        "cr1_categories",
        "new_boxes",
        "new_buses",
        "new_days",
    ]


def test_record_types_accept_custom_tables_and_keep_rejecting_typos():
    assert RecordRef.parse("cr5a_site:123").type == "cr5a_site"
    with pytest.raises(ValueError, match="is not one of account, contact"):
        RecordRef.parse("acount:1")
    with pytest.raises(ValueError, match="custom table's logical name"):
        RecordRef.parse("new_:1")
