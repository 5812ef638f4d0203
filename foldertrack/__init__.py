"""foldertrack: move a mail into an Exchange folder, get a CRM activity regarding that folder's record."""

__version__ = "0.1.0"
