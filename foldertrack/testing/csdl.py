"""A small reader of Microsoft's Graph v1.0 CSDL (``../shared/graph/v1.0-metadata.xml``) and a
conformance check of JSON against it.

:meth:`Csdl.check` walks a JSON object as an instance of an entity or complex type: every property it
carries (annotations like ``@odata.etag`` aside) must be declared on the type or a base type, and its value
must fit the declared type (string, boolean, integer, DateTimeOffset, Binary, Guid, enum member, complex
or entity object, collection); ``Nullable="false"`` properties may not be null; ``@odata.type`` must name
the type or a type derived from it.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
NAMESPACE = "microsoft.graph"
_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


class CsdlMissing(Exception):
    """The metadata file is not there (the shared reference folder is absent)."""


@dataclass
class StructuredType:
    name: str
    base: str | None
    properties: dict[str, tuple[str, bool]] = field(default_factory=dict)  # name -> (type, nullable)
    navigation: dict[str, str] = field(default_factory=dict)
    is_open: bool = False


def shared_graph_dir() -> Path:
    env = os.environ.get("FOLDERTRACK_SHARED")
    if env:
        return Path(env) / "graph"
    return Path(__file__).resolve().parents[3] / "shared" / "graph"


def load_graph_csdl(path: Path | None = None) -> Csdl:
    path = path or shared_graph_dir() / "v1.0-metadata.xml"
    if not path.is_file():
        raise CsdlMissing(f"{path} not found (Microsoft Graph v1.0 metadata)")
    return Csdl.parse(path)


def _short(type_name: str) -> str:
    for prefix in (f"{NAMESPACE}.", "graph."):
        if type_name.startswith(prefix):
            return type_name[len(prefix) :]
    return type_name


class Csdl:
    def __init__(self) -> None:
        self.types: dict[str, StructuredType] = {}
        self.enums: dict[str, set[str]] = {}

    @classmethod
    def parse(cls, path: Path) -> Csdl:
        from lxml import etree

        out = cls()
        root = etree.parse(str(path)).getroot()
        for schema in root.iter(f"{EDM}Schema"):
            if schema.get("Namespace") != NAMESPACE:
                continue
            for node in schema:
                tag = node.tag.replace(EDM, "") if isinstance(node.tag, str) else ""
                if tag == "EnumType":
                    out.enums[node.get("Name")] = {m.get("Name") for m in node if m.tag == f"{EDM}Member"}
                elif tag in ("EntityType", "ComplexType"):
                    base = node.get("BaseType")
                    found = StructuredType(
                        node.get("Name"),
                        _short(base) if base else None,
                        is_open=node.get("OpenType") == "true",
                    )
                    for prop in node:
                        if prop.tag == f"{EDM}Property":
                            found.properties[prop.get("Name")] = (
                                prop.get("Type"),
                                prop.get("Nullable") != "false",
                            )
                        elif prop.tag == f"{EDM}NavigationProperty":
                            found.navigation[prop.get("Name")] = prop.get("Type")
                    out.types[found.name] = found
        return out

    def chain(self, name: str) -> list[StructuredType]:
        out, current = [], self.types.get(name)
        while current is not None:
            out.append(current)
            current = self.types.get(current.base) if current.base else None
        return out

    def open_bag(self, name: str) -> bool:
        """An open type that declares nothing (``resourceData``): any property goes. Open types that declare
        properties (``message`` is open) are still checked strictly: we never send dynamic properties."""
        chain = self.chain(name)
        return bool(chain) and chain[0].is_open and not any(t.properties or t.navigation for t in chain)

    def derives(self, name: str, base: str) -> bool:
        return any(t.name == base for t in self.chain(name))

    def property(self, type_name: str, prop: str) -> tuple[str, bool] | None:
        for t in self.chain(type_name):
            if prop in t.properties:
                return t.properties[prop]
            if prop in t.navigation:
                return t.navigation[prop], True
        return None

    def check(self, type_name: str, value: Any, where: str = "$") -> list[str]:
        """Problems of ``value`` as an instance of ``type_name`` (empty: conforms)."""
        if type_name not in self.types:
            return [f"{where}: unknown type {type_name}"]
        if not isinstance(value, dict):
            return [f"{where}: expected a {type_name} object, got {type(value).__name__}"]
        if self.open_bag(type_name):  # resourceData: Graph puts the resource's own annotations in it
            return []
        declared = value.get("@odata.type")
        if isinstance(declared, str):
            actual = _short(declared.lstrip("#").replace("Microsoft.Graph.", "microsoft.graph."))
            actual = next((n for n in self.types if n.lower() == actual.lower()), actual)
            if not self.derives(actual, type_name):
                return [f"{where}: @odata.type {declared} is not a {type_name}"]
            type_name = actual
        problems: list[str] = []
        for key, item in value.items():
            if "@" in key:
                continue
            prop = self.property(type_name, key)
            if prop is None and self.open_bag(type_name):
                continue
            if prop is None:
                problems.append(f"{where}.{key}: no such property on {type_name} or its base types")
                continue
            kind, nullable = prop
            problems.extend(self._value(kind, nullable, item, f"{where}.{key}"))
        return problems

    def _value(self, kind: str, nullable: bool, value: Any, where: str) -> list[str]:
        if value is None:
            return [] if nullable else [f"{where}: null for a non-nullable {kind}"]
        if kind.startswith("Collection(") and kind.endswith(")"):
            if not isinstance(value, list):
                return [f"{where}: expected a collection of {kind[11:-1]}"]
            inner = kind[11:-1]
            return [p for i, v in enumerate(value) for p in self._value(inner, True, v, f"{where}[{i}]")]
        if kind.startswith("Edm."):
            return self._primitive(kind, value, where)
        short = _short(kind)
        if short in self.enums:
            members = self.enums[short]
            names = [v.strip() for v in str(value).split(",")]
            ok = isinstance(value, str) and all(n in members for n in names)
            return [] if ok else [f"{where}: {value!r} is not a member of enum {short}"]
        return self.check(short, value, where)

    @staticmethod
    def _primitive(kind: str, value: Any, where: str) -> list[str]:
        bad = [f"{where}: {value!r} is not a valid {kind}"]
        if kind == "Edm.String":
            return [] if isinstance(value, str) else bad
        if kind == "Edm.Boolean":
            return [] if isinstance(value, bool) else bad
        if kind in ("Edm.Int32", "Edm.Int64", "Edm.Int16", "Edm.Byte"):
            return [] if isinstance(value, int) and not isinstance(value, bool) else bad
        if kind in ("Edm.Double", "Edm.Single", "Edm.Decimal"):
            return [] if isinstance(value, int | float) and not isinstance(value, bool) else bad
        if kind == "Edm.DateTimeOffset":
            return [] if isinstance(value, str) and _DATETIME.match(value) else bad
        if kind == "Edm.Guid":
            try:
                uuid.UUID(str(value))
            except ValueError:
                return bad
            return []
        if kind == "Edm.Binary":
            if not isinstance(value, str):
                return bad
            try:
                base64.b64decode(
                    value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4), validate=True
                )
            except (binascii.Error, ValueError):
                return bad
            return []
        return [] if isinstance(value, str) else bad
