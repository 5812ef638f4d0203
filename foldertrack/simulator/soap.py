"""SOAP 1.1 envelopes for EWS, parsed and built with lxml (never by string concatenation).

Requests are parsed with a hardened parser (no entities, no network, no huge trees). Responses carry
``ServerVersionInfo`` in the SOAP header like Exchange 2019; errors are either per-item response messages
(built by the handlers) or SOAP faults with the EWS ``ResponseCode`` in ``detail`` (built here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from foldertrack.simulator.profiles import VERSION_RANK

NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS_M = "http://schemas.microsoft.com/exchange/services/2006/messages"
NS_T = "http://schemas.microsoft.com/exchange/services/2006/types"
NS_E = "http://schemas.microsoft.com/exchange/services/2006/errors"
NSMAP = {"s": NS_SOAP, "m": NS_M, "t": NS_T}

#: what ServerVersionInfo reports: Exchange Server 2019 CU14
SERVER_VERSION = {
    "MajorVersion": "15",
    "MinorVersion": "2",
    "MajorBuildNumber": "1544",
    "MinorBuildNumber": "4",
    "Version": "V2017_07_11",
}

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=True)
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class SoapFault(Exception):
    """The whole request fails: answered with a SOAP fault (HTTP 500), like Exchange does."""

    def __init__(self, code: str, text: str, values: dict[str, str] | None = None, faultcode: str = ""):
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text
        self.values = values or {}
        self.faultcode = faultcode


def T(tag: str) -> str:
    return f"{{{NS_T}}}{tag}"


def M(tag: str) -> str:
    return f"{{{NS_M}}}{tag}"


def clean(text: object) -> str:
    """Text as XML 1.0 can carry it (lxml escapes markup; control characters must go)."""
    return _INVALID_XML_CHARS.sub("", str(text))


def sub(parent: etree._Element, tag: str, text: object = None, **attrs: object) -> etree._Element:
    elem = etree.SubElement(parent, tag, {k: clean(v) for k, v in attrs.items() if v is not None})
    if text is not None:
        elem.text = clean(text)
    return elem


def el(tag: str, **attrs: object) -> etree._Element:
    return etree.Element(tag, {k: clean(v) for k, v in attrs.items() if v is not None}, nsmap=NSMAP)


def xs_bool(text: str | None, default: bool = False) -> bool:
    """An ``xs:boolean`` value: "true"/"false"/"1"/"0" (exchangelib sends "1"/"0")."""
    if text is None or not text.strip():
        return default
    return text.strip().lower() in ("true", "1")


def bool_text(value: bool) -> str:
    return "true" if value else "false"


@dataclass
class Request:
    operation: str  # local name of the body's first element, e.g. "GetFolder"
    payload: etree._Element
    impersonate: str | None  # SMTP address (or UPN) from ExchangeImpersonation
    request_version: str | None
    milliseconds: bool = False  # t:DateTimePrecision Milliseconds


#: without RequestServerVersion, Exchange processes a request against its first schema, Exchange2007
DEFAULT_REQUEST_VERSION = "Exchange2007"


def parse_request(data: bytes, validate=None) -> Request:
    """Parse a SOAP request; anything unusable raises :class:`SoapFault` (``ErrorSchemaValidation``).

    ``validate(elem)`` (a :class:`~.validation.RequestValidator`'s) checks each header element and the
    payload against messages.xsd; an unknown RequestServerVersion is ``ErrorInvalidServerVersion``."""
    try:
        root = etree.fromstring(data, _PARSER)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise SoapFault("ErrorSchemaValidation", f"The request failed schema validation: {exc}") from None
    if root.tag != f"{{{NS_SOAP}}}Envelope":
        raise SoapFault("ErrorSchemaValidation", "The request is not a SOAP 1.1 envelope.")
    body = root.find(f"{{{NS_SOAP}}}Body")
    if body is None or len(body) == 0 or not isinstance(body[0].tag, str):
        raise SoapFault("ErrorSchemaValidation", "The SOAP body is empty.")
    payload = body[0]
    qname = etree.QName(payload)
    if qname.namespace != NS_M:
        raise SoapFault("ErrorSchemaValidation", f"Unknown request element {payload.tag}.")
    header = root.find(f"{{{NS_SOAP}}}Header")
    impersonate = version = None
    milliseconds = False
    if header is not None:
        rsv = header.find(T("RequestServerVersion"))
        if rsv is not None:
            version = rsv.get("Version")
            if version not in VERSION_RANK:
                raise SoapFault("ErrorInvalidServerVersion", "The specified server version is invalid.")
        if validate is not None:
            for elem in header:
                if isinstance(elem.tag, str) and elem.tag.startswith(f"{{{NS_T}}}"):
                    validate(elem)
        milliseconds = (header.findtext(T("DateTimePrecision")) or "").strip() == "Milliseconds"
        imp = header.find(T("ExchangeImpersonation"))
        if imp is not None:
            sid = imp.find(T("ConnectingSID"))
            if sid is not None:
                for name in ("PrimarySmtpAddress", "SmtpAddress", "PrincipalName"):
                    found = sid.findtext(T(name))
                    if found:
                        impersonate = found.strip()
                        break
            if not impersonate:
                raise SoapFault(
                    "ErrorInvalidExchangeImpersonationHeaderData", "The impersonation header is empty."
                )
    if validate is not None:
        validate(payload)
    return Request(qname.localname, payload, impersonate, version or DEFAULT_REQUEST_VERSION, milliseconds)


def envelope(response: etree._Element) -> bytes:
    env = etree.Element(f"{{{NS_SOAP}}}Envelope", nsmap={"s": NS_SOAP})
    header = etree.SubElement(env, f"{{{NS_SOAP}}}Header")
    etree.SubElement(header, T("ServerVersionInfo"), SERVER_VERSION, nsmap={"h": NS_T})
    body = etree.SubElement(env, f"{{{NS_SOAP}}}Body")
    body.append(response)
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def stream_envelope(response: etree._Element) -> bytes:
    """One streamed notification the way Exchange frames it: a bare ``<Envelope xmlns="…soap/envelope/">``
    (default namespace, no XML declaration), header and body in the ``soap11`` prefix."""
    env = etree.Element(f"{{{NS_SOAP}}}Envelope", nsmap={None: NS_SOAP})
    header = etree.SubElement(env, f"{{{NS_SOAP}}}Header", nsmap={"soap11": NS_SOAP})
    etree.SubElement(header, T("ServerVersionInfo"), SERVER_VERSION, nsmap={None: NS_T})
    body = etree.SubElement(env, f"{{{NS_SOAP}}}Body", nsmap={"soap11": NS_SOAP})
    body.append(response)
    return etree.tostring(env, encoding="utf-8", xml_declaration=False)


def fault_envelope(fault: SoapFault) -> bytes:
    """``<s:Fault>`` with ``detail/e:ResponseCode``, ``e:Message``, ``t:MessageXml/t:Value`` (as Exchange)."""
    env = etree.Element(f"{{{NS_SOAP}}}Envelope", nsmap={"s": NS_SOAP})
    body = etree.SubElement(env, f"{{{NS_SOAP}}}Body")
    f = etree.SubElement(body, f"{{{NS_SOAP}}}Fault")
    code = etree.SubElement(f, "faultcode", nsmap={"a": NS_T})
    code.text = fault.faultcode or f"a:{fault.code}"
    string = etree.SubElement(f, "faultstring")
    string.set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
    string.text = clean(fault.text)
    detail = etree.SubElement(f, "detail")
    etree.SubElement(detail, f"{{{NS_E}}}ResponseCode", nsmap={"e": NS_E}).text = fault.code
    etree.SubElement(detail, f"{{{NS_E}}}Message", nsmap={"e": NS_E}).text = clean(fault.text)
    if fault.values:
        xml = etree.SubElement(detail, T("MessageXml"), nsmap={"t": NS_T})
        for name, value in fault.values.items():
            sub(xml, T("Value"), value, Name=name)
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def text_of(elem: etree._Element | None, tag: str, default: str | None = None) -> str | None:
    if elem is None:
        return default
    found = elem.find(tag)
    if found is None or found.text is None:
        return default
    return found.text.strip()
