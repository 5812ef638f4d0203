"""Plain text from an HTML mail body, for servers that return no text body (lxml.html, already a dep)."""

from __future__ import annotations

import re

import lxml.html
from lxml import etree

#: elements after which a line ends (the rest flows inline)
_BLOCKS = (
    "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol",
    "hr", "address", "section", "article", "header", "footer",
)  # fmt: skip
_BLANK_LINES = re.compile(r"\n{3,}")


def html_to_text(markup: str | None) -> str | None:
    """The readable text of ``markup``: scripts, styles and the head dropped, a line per block and per
    ``<br>``, runs of spaces collapsed. ``None`` for no markup; never raises on bad HTML."""
    if markup is None or not markup.strip():
        return None
    try:
        doc = lxml.html.document_fromstring(markup.encode("utf-8"))
    except (etree.ParserError, ValueError):
        return None
    for unwanted in doc.xpath("//script | //style | //head"):
        unwanted.drop_tree()
    for br in doc.iter("br"):
        br.tail = "\n" + (br.tail or "")
    for block in doc.iter(*_BLOCKS):
        block.tail = "\n" + (block.tail or "")
    lines = (" ".join(line.split()) for line in doc.text_content().splitlines())
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
