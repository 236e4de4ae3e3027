"""Exports of a finished run into the formats other projects read unchanged (`appf export ...`)."""

from appf.schemas import AppfError


class ExportError(AppfError):
    """An export cannot be made from this output directory (the message says why and what to do)."""
