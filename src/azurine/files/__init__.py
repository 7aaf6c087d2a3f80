"""What files mean beyond their bytes: the checks a file must pass for the purpose it was uploaded for."""

from azurine.files.batch_input import BatchLine, LineError, validate_batch_lines

__all__ = ["BatchLine", "LineError", "validate_batch_lines"]
