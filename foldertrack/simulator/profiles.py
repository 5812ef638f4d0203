"""Server profiles: switchable behaviours in which real EWS servers legitimately differ from Exchange.

The default profile, ``exchange``, behaves like Exchange Server 2019 / Exchange Online. Every other
profile reproduces one behaviour seen on an independent Exchange-compatible server, so the watcher can be
tested against each (``sim.use_profile("single-user-streams")``); ``independent`` combines them all.
"""

from __future__ import annotations

import contextvars
import dataclasses
from dataclasses import dataclass

__all__ = ["EXCHANGE", "PROFILES", "ResponseOptions", "ServerProfile", "profile_named", "response_options"]


@dataclass(frozen=True)
class ServerProfile:
    name: str
    description: str
    #: GetStreamingEvents accepts only subscriptions of the mailbox the request acts for (the impersonated
    #: user); the others are answered with ``single_user_streams_code`` naming their subscription ids
    single_user_streams: bool = False
    single_user_streams_code: str = "ErrorInvalidSubscription"
    #: fractional-second digits in every xs:dateTime (Exchange: 0, or 3 with DateTimePrecision)
    fraction_digits: int = 0
    #: False: ``item:TextBody`` is ignored and ``Best`` bodies are HTML (only HTML is ever returned)
    text_body: bool = True
    #: False: ``DateTimeReceived`` is never returned (no named profile; for tests of the watcher's guard)
    date_time_received: bool = True
    #: keep-alives on an idle stream carry a ``t:Notification`` with a ``StatusEvent`` per subscription
    status_event_heartbeats: bool = False
    #: the code a stream or GetEvents gets for a subscription the server lost (expired, forgotten)
    lost_subscription_code: str = "ErrorSubscriptionNotFound"
    #: hold notifications and release them together every this many seconds (0: at once)
    notification_batch_seconds: float = 0.0
    #: validate each request against messages.xsd (when the schema files are present)
    validate_requests: bool = True


EXCHANGE = ServerProfile("exchange", "Exchange Server 2019 / Exchange Online (the default)")

PROFILES: dict[str, ServerProfile] = {
    p.name: p
    for p in (
        EXCHANGE,
        dataclasses.replace(
            EXCHANGE,
            name="single-user-streams",
            description="a stream carries only subscriptions of the user it is opened for",
            single_user_streams=True,
        ),
        dataclasses.replace(
            EXCHANGE,
            name="tick-timestamps",
            description="timestamps with 9 fractional digits (2026-11-29T13:53:25.902433800Z)",
            fraction_digits=9,
        ),
        dataclasses.replace(
            EXCHANGE,
            name="html-only-bodies",
            description="item:TextBody is ignored: bodies are HTML only",
            text_body=False,
        ),
        dataclasses.replace(
            EXCHANGE,
            name="status-heartbeats",
            description="idle-stream keep-alives carry StatusEvent notifications",
            status_event_heartbeats=True,
        ),
        dataclasses.replace(
            EXCHANGE,
            name="unsubscribed-code",
            description="lost subscriptions are reported as ErrorSubscriptionUnsubscribed",
            lost_subscription_code="ErrorSubscriptionUnsubscribed",
        ),
        dataclasses.replace(
            EXCHANGE,
            name="batched-notifications",
            description="notifications are held and delivered in batches every 0.5 s",
            notification_batch_seconds=0.5,
        ),
        dataclasses.replace(
            EXCHANGE,
            name="independent",
            description="all of the above at once (the independent server the watcher was checked on)",
            single_user_streams=True,
            fraction_digits=9,
            text_body=False,
            status_event_heartbeats=True,
            lost_subscription_code="ErrorSubscriptionUnsubscribed",
            notification_batch_seconds=0.5,
        ),
    )
}


def profile_named(name: str | ServerProfile) -> ServerProfile:
    if isinstance(name, ServerProfile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown server profile {name!r}; known: {', '.join(PROFILES)}") from None


#: Exchange versions in release order (``t:ExchangeVersionType``); a request's version is its index here
VERSIONS: tuple[str, ...] = (
    "Exchange2007",
    "Exchange2007_SP1",
    "Exchange2009",
    "Exchange2010",
    "Exchange2010_SP1",
    "Exchange2010_SP2",
    "Exchange2012",
    "Exchange2013",
    "Exchange2013_SP1",
    "Exchange2015",
    "Exchange2016",
    "V2015_10_05",
    "V2016_01_06",
    "V2016_04_13",
    "V2016_07_13",
    "V2016_10_10",
    "V2017_01_07",
    "V2017_04_14",
    "V2017_07_11",
)
VERSION_RANK = {name: index for index, name in enumerate(VERSIONS)}
EXCHANGE2010 = VERSION_RANK["Exchange2010"]
EXCHANGE2013 = VERSION_RANK["Exchange2013"]


@dataclass(frozen=True)
class ResponseOptions:
    """How the response to the request being served is shaped: its RequestServerVersion, its
    DateTimePrecision and the server profile. Set per request by the HTTP handler (a context variable, so
    every renderer sees it without threading it through each operation)."""

    version: int = len(VERSIONS) - 1
    milliseconds: bool = False
    profile: ServerProfile = EXCHANGE


_DEFAULT_OPTIONS = ResponseOptions()
_OPTIONS: contextvars.ContextVar[ResponseOptions | None] = contextvars.ContextVar(
    "foldertrack_sim_response", default=None
)


def response_options() -> ResponseOptions:
    return _OPTIONS.get() or _DEFAULT_OPTIONS


def set_response_options(options: ResponseOptions) -> None:
    _OPTIONS.set(options)
