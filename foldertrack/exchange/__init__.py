"""Talking to Exchange over EWS with exchangelib: connection, folder hierarchy, item fetch and conversion."""
