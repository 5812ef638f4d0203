"""xs:dateTime values with fractional seconds, which exchangelib 5.x cannot parse.

Exchange sends whole seconds (``2026-11-29T13:53:25Z``); other EWS servers send .NET ticks or more
(``2026-11-29T13:53:25.902433800Z``), and exchangelib's ``EWSDateTime.from_string`` turns those into
``None`` (logged at INFO): ``DateTimeReceived`` would be empty and ``backfill: false`` could not tell old
mail from new. :func:`install` makes the parser accept any number of fractional digits (microseconds
kept, the rest dropped); everything else still goes through exchangelib's own parser. Idempotent; the
exchange layer installs it on import.
"""

from __future__ import annotations

import re

from exchangelib.ewsdatetime import EWSDateTime

_FRACTION = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d+)(Z|[+-]\d\d:\d\d)?$")
_original = EWSDateTime.__dict__["from_string"].__func__


def parse_ews_datetime(date_string: str) -> EWSDateTime:
    """``EWSDateTime.from_string`` that also takes 1 to 9 (or more) fractional-second digits."""
    found = _FRACTION.match(date_string)
    if found is None:
        return _original(EWSDateTime, date_string)
    whole, fraction, zone = found.groups()
    value = _original(EWSDateTime, whole + (zone or ""))
    return value.replace(microsecond=int(fraction[:6].ljust(6, "0")))


def _from_string(cls, date_string):
    if cls is EWSDateTime:
        return parse_ews_datetime(date_string)
    return _original(cls, date_string)


def install() -> None:
    if getattr(EWSDateTime.from_string, "__func__", None) is not _from_string:
        EWSDateTime.from_string = classmethod(_from_string)  # type: ignore[method-assign, assignment]
