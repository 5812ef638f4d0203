"""Dataverse Web API errors: HTTP status + ``{"error": {"code": "0x8004…", "message": …}}``.

https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors
https://learn.microsoft.com/power-apps/developer/data-platform/reference/web-service-error-codes

The codes are Dataverse's own: 0x80048d19 (payload the OData reader rejects: unknown property, bad
``@odata.bind``, wrong type), 0x80060888 (unknown column or bad syntax in a query option), 0x80044331
(StringLengthTooLong), 0x8004431A (PicklistValueOutOfRange), 0x80048408 (status not valid for the state),
0x80040217 (ObjectDoesNotExist), 0x80040237 (DuplicateRecord, 412 on a create that finds the row),
0x80060882 (ETag mismatch), 0x80072322 / 0x80072326 (service protection: request count / concurrency).
"""

from __future__ import annotations

import math
from typing import Any

PAYLOAD_HELP = "https://go.microsoft.com/fwlink/?linkid=2195293"


class DataverseError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def payload_error(entity_set: str, inner: str) -> DataverseError:
    """What the OData reader says about a body it cannot map to the table."""
    return DataverseError(
        400,
        "0x80048d19",
        f"Error identified in Payload provided by the user for Entity :'{entity_set}', For more information on "
        f"this error please follow this help link {PAYLOAD_HELP}  ---->  InnerException : "
        f"Microsoft.OData.ODataException: {inner}",
    )


def unknown_property(entity_set: str, name: str, logical: str) -> DataverseError:
    return payload_error(
        entity_set,
        f"The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM.{logical}'. Make sure to only use "
        "property names that are defined by the type or mark the type as open type.",
    )


def undeclared_navigation(entity_set: str, name: str) -> DataverseError:
    return payload_error(
        entity_set,
        f"An undeclared property '{name}' which only has property annotations in the payload but no property "
        "value was found in the payload. In OData, only declared navigation properties and declared named "
        "streams can be represented as properties without values.",
    )


def query_property(name: str, logical: str) -> DataverseError:
    return DataverseError(
        400,
        "0x80060888",
        f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{logical}'.",
    )


def query_syntax(message: str) -> DataverseError:
    return DataverseError(400, "0x80060888", message)


def string_too_long(column: str, logical: str, limit: int) -> DataverseError:
    return DataverseError(
        400,
        "0x80044331",
        f"A validation error occurred. The length of the '{column}' attribute of the '{logical}' entity exceeded "
        f"the maximum allowed length of '{limit}'.",
    )


def option_out_of_range(column: str, logical: str, value: object) -> DataverseError:
    return DataverseError(
        400,
        "0x8004431A",
        f"A validation error occurred. The value {value} of '{column}' on record of type '{logical}' is outside "
        "the valid range.",
    )


def status_for_state(logical: str, status: int, state: int, row_id: str) -> DataverseError:
    return DataverseError(
        400,
        "0x80048408",
        f"{status} is not a valid status code for state code {logical}State {state} on {logical} with Id {row_id}.",
    )


def not_found(logical: str, row_id: str) -> DataverseError:
    return DataverseError(404, "0x80040217", f"{logical} With Id = {row_id} Does Not Exist")


def duplicate() -> DataverseError:
    return DataverseError(412, "0x80040237", "A record with matching key values already exists.")


def etag_mismatch() -> DataverseError:
    return DataverseError(
        412,
        "0x80060882",
        "The version of the existing record doesn't match the RowVersion property provided.",
    )


def resource_not_found(segment: str) -> DataverseError:
    return DataverseError(404, "0x8006088a", f"Resource not found for the segment '{segment}'.")


def method_not_allowed(method: str) -> DataverseError:
    return DataverseError(405, "0x80060888", f"The HTTP method '{method}' is not allowed for this resource.")


def too_many_requests(retry_after: float, limit: int = 6000, window: float = 300) -> DataverseError:
    return DataverseError(
        429,
        "0x80072322",
        f"Number of requests exceeded the limit of {limit} over time window of {window:g} seconds.",
        {"Retry-After": str(max(0, math.ceil(retry_after)))},
    )


def too_many_concurrent(limit: int, retry_after: float) -> DataverseError:
    return DataverseError(
        429,
        "0x80072326",
        f"Number of concurrent requests exceeded the limit of {limit}.",
        {"Retry-After": str(max(0, math.ceil(retry_after)))},
    )
