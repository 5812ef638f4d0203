"""Rule files (``rules/*.yaml``): which mailbox folders map to which CRM records, with what policy."""

from foldertrack.rules.loader import load_rules, parse_rule_file
from foldertrack.rules.model import FolderRule, Record, RecordLookup, RuleMatch, RuleSet

__all__ = ["FolderRule", "Record", "RecordLookup", "RuleMatch", "RuleSet", "load_rules", "parse_rule_file"]
