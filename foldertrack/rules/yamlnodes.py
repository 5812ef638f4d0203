"""Reading one rule file into YAML nodes, and typed access to nodes that records problems with line numbers.

We compose (never construct arbitrary objects): nodes keep their marks, so every problem names a line.
Scalars are only ever built with PyYAML's SafeConstructor, and only for the standard tags.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from foldertrack.errors import RuleProblem

_STD = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_STD + t for t in ("str", "null", "bool", "int", "float", "timestamp")}
_COLLECTION_TAGS = {_STD + "map", _STD + "seq"}


def line_of(node: Node) -> int:
    return node.start_mark.line + 1


def compose_file(data: bytes, source: str) -> tuple[Node | None, list[RuleProblem]]:
    """The document's root node, or problems: not UTF-8, YAML syntax, empty file, unsupported tags."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start : exc.start + 1].hex()
        return None, [RuleProblem(source, line, f"file is not UTF-8 text (byte 0x{byte})")]
    try:
        root = yaml.compose(text.removeprefix("\ufeff"), Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        message = "; ".join(part for part in (exc.context, exc.problem) if part)
        return None, [RuleProblem(source, line, f"YAML syntax error: {message}")]
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        return None, [
            RuleProblem(source, line, f"YAML syntax error: {exc.reason} (character {exc.character!r})")
        ]
    except yaml.YAMLError as exc:
        return None, [RuleProblem(source, 1, _short_message(f"YAML syntax error: {exc}"))]
    if root is None or (isinstance(root, ScalarNode) and root.tag == _STD + "null" and not root.value):
        return None, [RuleProblem(source, 1, "file is empty (expected 'mailboxes:')")]
    problems = [
        RuleProblem(source, line_of(node), f"unsupported YAML tag {node.tag!r}") for node in _bad_tags(root)
    ]
    return root, problems


def _bad_tags(root: Node) -> list[Node]:
    bad, stack, seen = [], [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            if node.tag not in _SCALAR_TAGS:
                bad.append(node)
        elif node.tag not in _COLLECTION_TAGS:
            bad.append(node)
        elif isinstance(node, MappingNode):
            stack.extend(n for pair in node.value for n in pair)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
    return bad


def describe(node: Node) -> str:
    """How a wrong value reads in a message: ``a list``, ``'yes'``, ``empty``."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if is_null(node):
        return "empty"
    return excerpt(_source_line(node) or node.value)


#: A problem quotes at most this much of the offending value: a 52 MB scalar, or a rules "file" that is a
#: symlink to /etc/passwd, must not end up whole in a log line.
MAX_EXCERPT = 60
MAX_MESSAGE = 500


def excerpt(value: object) -> str:
    """``repr`` of the value's first line, at most ``MAX_EXCERPT`` characters (marked when cut)."""
    text = str(value)
    first = text.split("\n", 1)[0].split("\r", 1)[0]
    short = first[:MAX_EXCERPT]
    return repr(short) + ("…" if short != text else "")


def _source_line(node: Node) -> str | None:
    """The value as written on its line of the file (a plain scalar may fold many lines into one)."""
    mark = node.start_mark
    buffer, pointer = getattr(mark, "buffer", None), getattr(mark, "pointer", None)
    if not isinstance(buffer, str) or pointer is None:
        return None
    end_mark = node.end_mark
    if end_mark is not None and end_mark.line == mark.line and getattr(end_mark, "pointer", None):
        end = end_mark.pointer  # the value ends on its line: exactly what was written
    else:
        end = buffer.find("\n", pointer)
    line = buffer[pointer : end if end >= 0 else len(buffer)].strip()
    if line.startswith(("'", '"')):  # quoted: show the value, not the quotes and escapes
        return None
    return line if line and str(node.value).startswith(line[:1]) else None


def _short_message(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + "… (message cut)"


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _STD + "null"


class NodeReader:
    """Typed access to the nodes of one file; each accessor records a problem and returns None when wrong."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[RuleProblem] = []
        self._constructor = SafeConstructor()
        self._suggested: set[tuple[int, str]] = set()  # (mapping node id, key a typo was taken for)

    def problem(self, at: Node | int, message: str) -> None:
        line = at if isinstance(at, int) else line_of(at)
        self.problems.append(RuleProblem(self.source, line, _short_message(message)))

    def mapping(
        self, node: Node, what: str, allowed: Sequence[str] | None
    ) -> dict[str, tuple[ScalarNode, Node]] | None:
        """Key → (key node, value node); reports non-mappings, duplicate keys and unknown keys."""
        if not isinstance(node, MappingNode):
            self.problem(node, f"{what} must be a mapping, not {describe(node)}")
            return None
        result: dict[str, tuple[ScalarNode, Node]] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode) or is_null(key):
                self.problem(key, f"{what}: a key must be a plain name, not {describe(key)}")
                continue
            name = key.value
            if name in result:
                first = line_of(result[name][0])
                self.problem(key, f"duplicate key {name!r} in {what} (first at line {first})")
                continue
            if allowed is not None and name not in allowed:
                match = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
                hint = f"did you mean {match[0]!r}?" if match else f"expected {', '.join(allowed)}"
                if match:
                    self._suggested.add((id(node), match[0]))
                self.problem(key, f"unknown key {name!r} in {what} ({hint})")
                continue
            result[name] = (key, value)
        return result

    def missing(self, mapping: Node, keys: Sequence[str], message: str, at: Node | None = None) -> None:
        """Report missing required key(s), unless an unknown key was already reported as a typo of one."""
        if not any((id(mapping), key) in self._suggested for key in keys):
            self.problem(at or mapping, message)

    def string(self, node: Node, what: str) -> str | None:
        """A scalar's text as written (so ``0012`` stays ``"0012"`` and ``yes`` stays ``"yes"``)."""
        if not isinstance(node, ScalarNode) or is_null(node) or not node.value.strip():
            self.problem(node, f"{what} must be a string, not {describe(node)}")
            return None
        return node.value.strip()

    def boolean(self, node: Node, what: str) -> bool | None:
        if isinstance(node, ScalarNode) and node.tag == _STD + "bool":
            return bool(self._constructor.construct_yaml_bool(node))
        self.problem(node, f"{what} must be true or false, not {describe(node)}")
        return None

    def choice(self, node: Node, what: str, choices: Sequence[str]) -> str | None:
        text = self.string(node, what)
        if text is None:
            return None
        if text not in choices:
            match = difflib.get_close_matches(text, choices, n=1, cutoff=0.6)
            hint = f" (did you mean {match[0]!r}?)" if match else ""
            self.problem(node, f"{what} must be one of {', '.join(choices)}, not {text!r}{hint}")
            return None
        return text

    def sequence(self, node: Node, what: str) -> list[Node] | None:
        if not isinstance(node, SequenceNode):
            self.problem(node, f"{what} must be a list, not {describe(node)}")
            return None
        return list(node.value)
