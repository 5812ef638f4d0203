"""Raw SOAP for tests that speak to the simulator without exchangelib (as other EWS clients do)."""

from __future__ import annotations

from typing import Any

import requests
from lxml import etree

NS = {
    "s": "http://schemas.xmlsoap.org/soap/envelope/",
    "m": "http://schemas.microsoft.com/exchange/services/2006/messages",
    "t": "http://schemas.microsoft.com/exchange/services/2006/types",
    "e": "http://schemas.microsoft.com/exchange/services/2006/errors",
}


def soap_envelope(body: str, *, version: str | None = "Exchange2016", header: str = "") -> bytes:
    """A SOAP 1.1 request with ``body`` (XML text, prefixes ``m:`` and ``t:`` bound)."""
    rsv = f'<t:RequestServerVersion Version="{version}"/>' if version else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:m="{NS["m"]}" xmlns:t="{NS["t"]}">'
        f"<s:Header>{rsv}{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def post(sim: Any, data: bytes, auth: tuple[str, str], **kwargs: Any) -> requests.Response:
    return requests.post(
        sim.url,
        data=data,
        auth=auth,
        headers={"Content-Type": "text/xml; charset=utf-8", **kwargs.pop("headers", {})},
        timeout=kwargs.pop("timeout", 10),
        **kwargs,
    )


def parse(response: requests.Response) -> etree._Element:
    return etree.fromstring(response.content)


def find(root: etree._Element, path: str) -> list[etree._Element]:
    """XPath with the s/m/t/e prefixes."""
    return root.xpath(path, namespaces=NS)


def response_code(root: etree._Element) -> str | None:
    """The first ResponseCode: of a response message, or of a SOAP fault's detail."""
    codes = find(root, "//m:ResponseCode/text() | //e:ResponseCode/text()")
    return str(codes[0]) if codes else None
