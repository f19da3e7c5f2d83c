"""The errors that bad input is expected to cause, kept apart from the ValueErrors and KeyErrors of bugs.

A stage ends with one line and exit status 1 for an InputError (or an OSError: a missing file, a full disk, a
read-only folder); any other exception is a bug and keeps its traceback. InputError is a ValueError, so code that
catches ValueError still catches it.
"""

from __future__ import annotations


class InputError(ValueError):
    """What a stage was given is wrong: a params value, a data set, an upstream file. The message is one line that
    names the file or the param."""


class StoreError(InputError):
    """A Zarr store on disk is not what its reader expects (layout, format, damaged or missing shards)."""


class ModelFileError(InputError):
    """A saved network or weights file cannot be read or does not fit the network it is meant for."""
