"""Mail sources: where tracked folders' changes come from (EWS in ``foldertrack.exchange``, Graph in
:mod:`foldertrack.sources.graph`)."""
