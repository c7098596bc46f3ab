"""The project's own exception types: every user-facing failure is one of these."""


class TransferNeuronsError(Exception):
    """Base class: a clear, user-facing message about bad input or an unsupported setup."""


class DataError(TransferNeuronsError, ValueError):
    """A data file, bundled set or dataset id that cannot be read as the expected kind."""


class ModelLoadError(TransferNeuronsError):
    """A model path, file or architecture that cannot be loaded or has no adapter."""


class OutputError(TransferNeuronsError, OSError):
    """A result file or folder that cannot be written (not a folder, read-only, disk full); names the path.

    Also an OSError, so callers that tolerate a failed write (a cache entry) keep doing so.
    """
