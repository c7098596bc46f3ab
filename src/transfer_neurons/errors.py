"""The project's own exception types: every user-facing failure is one of these."""


class TransferNeuronsError(Exception):
    """Base class: a clear, user-facing message about bad input or an unsupported setup."""


class DataError(TransferNeuronsError, ValueError):
    """A data file, bundled set or dataset id that cannot be read as the expected kind."""


class ModelLoadError(TransferNeuronsError):
    """A model path, file or architecture that cannot be loaded or has no adapter."""
