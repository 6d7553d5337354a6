"""The one error type that the command line turns into a one-line message and exit code 1."""


class ASRError(Exception):
    """Bad input from the user (a file, a manifest, a config, an option): never a bug of ours."""
