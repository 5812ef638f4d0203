"""Request validation against Microsoft's ``messages.xsd``, as Exchange does before running an operation.

The schema is compiled once, lazily, with lxml (libxml2: a few microseconds per request). Its files
(``<repo>/../shared/ews-schema`` or ``$FOLDERTRACK_EWS_SCHEMA``) may be absent where the simulator runs;
then validation is off and one log line says so.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from lxml import etree

from foldertrack.simulator.soap import SoapFault

log = logging.getLogger(__name__)

_XML_NS_SCHEMA = b"""<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
           targetNamespace="http://www.w3.org/XML/1998/namespace">
  <xs:attribute name="lang" type="xs:language"/>
  <xs:attribute name="space"><xs:simpleType><xs:restriction base="xs:NCName">
    <xs:enumeration value="default"/><xs:enumeration value="preserve"/>
  </xs:restriction></xs:simpleType></xs:attribute>
  <xs:attribute name="base" type="xs:anyURI"/>
  <xs:attribute name="id" type="xs:ID"/>
</xs:schema>"""
_XML_IMPORT = b'<xs:import namespace="http://www.w3.org/XML/1998/namespace"/>'


def schema_path() -> Path:
    env = os.environ.get("FOLDERTRACK_EWS_SCHEMA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "ews-schema" / "messages.xsd"


class _Resolver(etree.Resolver):
    """types.xsd imports the xml namespace without a location; libxml2 needs one (for ``xml:lang``)."""

    def __init__(self, folder: Path):
        super().__init__()
        self._folder = folder

    def resolve(self, url, pubid, context):
        name = (url or "").rsplit("/", 1)[-1]
        if name == "xml.xsd":
            return self.resolve_string(_XML_NS_SCHEMA, context)
        if name == "types.xsd":
            text = (self._folder / "types.xsd").read_bytes()
            located = _XML_IMPORT[:-2] + b' schemaLocation="xml.xsd"/>'
            return self.resolve_string(
                text.replace(_XML_IMPORT, located, 1), context, base_url=str(self._folder / "types.xsd")
            )
        return None


class RequestValidator:
    """``validate(elem)`` raises ``ErrorSchemaValidation`` for a payload or header element the schema
    rejects; a no-op when the schema files are missing."""

    def __init__(self, path: Path | None = None):
        self._path = path
        self._lock = threading.Lock()
        self._schema: etree.XMLSchema | None = None
        self._loaded = False

    @property
    def available(self) -> bool:
        return self._load() is not None

    def _load(self) -> etree.XMLSchema | None:
        if self._loaded:
            return self._schema
        with self._lock:
            if not self._loaded:
                self._schema = self._compile(self._path or schema_path())
                self._loaded = True
        return self._schema

    @staticmethod
    def _compile(path: Path) -> etree.XMLSchema | None:
        if not path.is_file():
            log.warning("EWS schema not found at %s: requests are not validated", path)
            return None
        parser = etree.XMLParser(no_network=True, resolve_entities=False)
        parser.resolvers.add(_Resolver(path.parent))
        try:
            return etree.XMLSchema(etree.parse(str(path), parser))
        except (etree.XMLSchemaParseError, etree.XMLSyntaxError, OSError) as exc:
            log.warning("EWS schema at %s does not compile (%s): requests are not validated", path, exc)
            return None

    def validate(self, elem: etree._Element) -> None:
        schema = self._load()
        if schema is None:
            return
        with self._lock:  # one validator object: its error log is shared, so one call at a time (~2 µs)
            if schema.validate(elem):
                return
            error = schema.error_log.last_error
        violation = error.message if error is not None else "invalid"
        raise SoapFault(
            "ErrorSchemaValidation",
            f"The request failed schema validation: {violation}",
            {
                "LineNumber": str(elem.sourceline or (error.line if error else 0)),
                "LinePosition": str(error.column if error else 0),
                "Violation": violation,
            },
        )


#: one per process: compiling takes ~0.2 s, so it happens once, on the first request
VALIDATOR = RequestValidator()
