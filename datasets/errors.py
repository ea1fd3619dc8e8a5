"""Exceptions raised by the dataset loaders, so callers can tell missing data from bugs."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset (or part of it) is missing on disk or could not be downloaded.

    The message always says which folders/files are expected where and how to get them.
    """


class ImageReadError(OSError):
    """An image file exists in a dataset listing but cannot be opened or decoded; the message names the file."""
