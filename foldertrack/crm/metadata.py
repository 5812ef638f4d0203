"""What a Dataverse server accepts for the columns we write: maximum lengths and option values.

Taken from Microsoft's Common Data Model definitions in ``../shared/dataverse/`` (``Email.resolved``,
``ActivityParty.resolved``, ``Account``, ``Contact``, ``Lead``; ``activitymimeattachment`` from the README
there); ``tests/sinks/test_dataverse_metadata.py`` checks every number against those files. Lengths are
counted as Dataverse (.NET) counts them: in UTF-16 code units.
"""

from __future__ import annotations

#: ``(entity, column) -> maximum length`` of the string columns the sink and records sync touch
MAX_LENGTH: dict[tuple[str, str], int] = {
    ("email", "subject"): 200,
    ("email", "description"): 1_073_741_823,
    ("email", "messageid"): 320,
    ("email", "sender"): 250,
    ("email", "torecipients"): 500,
    ("email", "inreplyto"): 320,
    ("email", "conversationindex"): 2048,
    ("activityparty", "addressused"): 200,
    ("activitymimeattachment", "filename"): 255,
    ("activitymimeattachment", "mimetype"): 256,
    ("activitymimeattachment", "subject"): 2000,
    ("account", "name"): 160,
    ("account", "accountnumber"): 20,
    ("contact", "fullname"): 160,
    ("lead", "fullname"): 160,
    ("lead", "companyname"): 100,
}

#: email ``statecode``
EMAIL_STATE_OPEN = 0
EMAIL_STATE_COMPLETED = 1
#: email ``statuscode`` (each correlated with a statecode)
EMAIL_STATUS_DRAFT = 1  # Open
EMAIL_STATUS_SENT = 3  # Completed
EMAIL_STATUS_RECEIVED = 4  # Completed
#: email ``notifications``: the body was cut
EMAIL_NOTIFICATION_TRUNCATED_BODY = 2

#: ``activityparty.participationtypemask`` per party role
PARTICIPATION: dict[str, int] = {"from": 1, "to": 2, "cc": 3, "bcc": 4}


def utf16_length(text: str) -> int:
    """Length as Dataverse counts it (characters outside the BMP count twice)."""
    return len(text.encode("utf-16-le")) // 2


def cut(text: str, limit: int) -> str:
    """``text`` shortened to at most ``limit`` UTF-16 code units, never splitting a surrogate pair."""
    if utf16_length(text) <= limit:
        return text
    data = text.encode("utf-16-le")[: limit * 2]
    if len(data) >= 2 and 0xD8 <= data[-1] <= 0xDB:  # a high surrogate without its low half
        data = data[:-2]
    return data.decode("utf-16-le")
