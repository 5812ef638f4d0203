"""Evaluate an EWS ``Restriction`` (the subset clients use: comparisons, Contains, Exists, And/Or/Not)."""

from __future__ import annotations

from collections.abc import Callable

from lxml import etree

from foldertrack.simulator.model import EwsError
from foldertrack.simulator.soap import T

Getter = Callable[[str], object]  # element name ("Subject") -> value, None when absent

_COMPARISONS = {
    "IsEqualTo": lambda a, b: a == b,
    "IsNotEqualTo": lambda a, b: a != b,
    "IsGreaterThan": lambda a, b: a > b,
    "IsGreaterThanOrEqualTo": lambda a, b: a >= b,
    "IsLessThan": lambda a, b: a < b,
    "IsLessThanOrEqualTo": lambda a, b: a <= b,
}


def _field(elem: etree._Element) -> str:
    for child in elem:
        if child.tag == T("FieldURI"):
            return (child.get("FieldURI") or "").rpartition(":")[2]
        if child.tag in (T("IndexedFieldURI"), T("ExtendedFieldURI")):
            raise EwsError("ErrorUnsupportedPathForQuery", "Only FieldURI paths are supported here.")
    raise EwsError("ErrorInvalidRestriction", "The restriction names no property.")


def _normalise(value: object, constant: str) -> tuple[object, object]:
    if isinstance(value, bool):
        return value, constant.strip().lower() == "true"
    if isinstance(value, int):
        try:
            return value, int(constant)
        except ValueError:
            return str(value), constant
    text = str(value)
    if text.endswith("Z") and constant.endswith("Z"):
        return text, constant
    return text.casefold(), constant.casefold()


def matches(elem: etree._Element, get: Getter) -> bool:
    name = etree.QName(elem).localname
    if name == "Restriction":
        return all(matches(c, get) for c in elem if isinstance(c.tag, str))
    if name == "And":
        return all(matches(c, get) for c in elem if isinstance(c.tag, str))
    if name == "Or":
        return any(matches(c, get) for c in elem if isinstance(c.tag, str))
    if name == "Not":
        return not all(matches(c, get) for c in elem if isinstance(c.tag, str))
    if name == "Exists":
        return get(_field(elem)) is not None
    if name == "Contains":
        value = get(_field(elem))
        constant = elem.find(T("Constant"))
        wanted = constant.get("Value", "") if constant is not None else ""
        if value is None:
            return False
        texts = value if isinstance(value, list) else [value]
        ignore_case = "IgnoreCase" in (elem.get("ContainmentComparison") or "")
        mode = elem.get("ContainmentMode") or "FullString"
        for text in map(str, texts):
            a, b = (text.casefold(), wanted.casefold()) if ignore_case else (text, wanted)
            if (mode == "FullString" and a == b) or (mode == "Prefixed" and a.startswith(b)):
                return True
            if mode in ("Substring", "PrefixOnWords", "ExactPhrase") and b in a:
                return True
        return False
    if name in _COMPARISONS:
        value = get(_field(elem))
        holder = elem.find(T("FieldURIOrConstant"))
        constant = holder.find(T("Constant")) if holder is not None else None
        if constant is None:
            raise EwsError("ErrorInvalidRestriction", "Only comparisons with a constant are supported.")
        if value is None:
            return name == "IsNotEqualTo"
        values = value if isinstance(value, list) else [value]
        return any(_COMPARISONS[name](*_normalise(v, constant.get("Value", ""))) for v in values)
    raise EwsError("ErrorInvalidRestriction", f"Unsupported restriction {name}.")
