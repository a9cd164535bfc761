"""Errors that are the user's to fix: the command line prints their message, never a traceback."""


class VidclustError(Exception):
    """A problem with the user's input, configuration or environment, explained in one line."""
