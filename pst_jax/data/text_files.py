"""The users' text files are UTF-8: one that is not is a one-line error naming the file and the line.

A ``UnicodeDecodeError`` says only the byte offset in the block being decoded (``'utf-8' codec can't decode
byte 0xe9 in position 25``), which names neither the file nor the line to fix; :func:`utf8_errors` turns it
into one that does.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def not_utf8(path: str | Path) -> ValueError:
    """The error for ``path``, which does not decode as UTF-8: its first bad byte, by line and column.

    Example:
      >>> not_utf8("dev.tsv")  # a Latin-1 'é' on line 3  # doctest: +SKIP
      ValueError('dev.tsv line 3, column 4: byte 0xe9 is not UTF-8; save the file as UTF-8')
    """
    data = Path(path).read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - data.rfind(b"\n", 0, error.start)
        return ValueError(
            f"{path} line {line}, column {column}: byte 0x{data[error.start]:02x} is not UTF-8; save the file as UTF-8"
        )
    return ValueError(f"{path} is not UTF-8 text; save the file as UTF-8")


@contextmanager
def utf8_errors(path: str | Path) -> Iterator[None]:
    """Turns a ``UnicodeDecodeError`` raised while ``path`` is read into :func:`not_utf8`'s ``ValueError``.

    Example::

        with utf8_errors(path), open(path, encoding="utf-8") as file:
            lines = file.readlines()
    """
    try:
        yield
    except UnicodeDecodeError:
        raise not_utf8(path) from None
