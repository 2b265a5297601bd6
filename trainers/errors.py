"""Errors a user's input can cause in ``trainers``; importable without torch."""

from __future__ import annotations


class DataError(ValueError):
    """A data set that cannot be used as given; the message names it."""
