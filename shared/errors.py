"""The pipeline's exceptions: terminal (never retried) and transient (retry), as in dlt."""


class EtlError(Exception):
    """Base of every pipeline error; the message names the run, table and setting involved."""


class TerminalError(EtlError):
    """Retrying cannot help (bad input, bad configuration): stop, alert, keep the input for a re-run."""


class TransientError(EtlError):
    """The same call may succeed later (a server down, a lost race): the trigger retries."""


class SettingsError(TerminalError):
    """One or more settings are missing or invalid; the message lists every one of them."""
