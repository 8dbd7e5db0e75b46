"""User-facing errors: one line for the user, a hint for what to do, an exit code for scripts."""

from __future__ import annotations

EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2


class MmcliError(Exception):
    """An error caused by the user's input (recipe, manifest, media, arguments).

    The CLI prints ``message`` (and ``hint``) on one line and exits with ``exit_code``
    without a traceback; ``--debug`` shows the traceback.
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return " ".join(text.split())


class RecipeError(MmcliError):
    """A recipe key is missing, unknown or has a value that is not allowed."""

    def one_line(self) -> str:
        return "recipe error: " + super().one_line()


class DataError(MmcliError):
    """A manifest or media file cannot be used."""


class RuntimeFailure(MmcliError):
    """Something failed while running (not the user's input): exit code 1."""

    exit_code = EXIT_RUNTIME


class BadValue(Exception):
    """One manifest cell cannot be used (a broken medium, an unknown label, an empty caption); ``str(err)``
    is a short reason. The data pipeline adds the row and column and fails or skips the row (a counted
    bad row). Processors and target codecs raise it; it is not shown to users on its own."""


class MmcliWarning(UserWarning):
    """Something the user should know that does not stop the command (a run's recipe edited after training,
    a resume that found nothing to continue). The CLI prints each one once on stderr as ``warning: ...``
    and adds it to the JSON result's ``warnings``; Python callers get an ordinary warning."""
