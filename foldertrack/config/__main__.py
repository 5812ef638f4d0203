"""``python -m foldertrack.config > table.md``: regenerate the README table."""

from foldertrack.config.render import settings_markdown

print(settings_markdown())
