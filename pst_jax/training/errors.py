"""The error type for bad input found before training, shared by every task and launcher."""


class InputError(ValueError):
    """Bad input found before training: the launcher prints it as one line, without a traceback."""
