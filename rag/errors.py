"""Errors that carry one sentence a user can act on.

The CLI and the app print ``str(error)`` without a traceback, so the message
must say what went wrong and what to do about it.
"""


class RagError(Exception):
    """A failure the user can fix: bad setting, missing service, unreadable file."""


class ModelUnavailable(RagError):
    """The chat model cannot be reached or loaded."""


class ModelBusy(ModelUnavailable):
    """A question waited in line for its model longer than RAG_QUEUE_TIMEOUT_S."""
