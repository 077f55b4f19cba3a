"""Errors that the CLI shows to the user as one line (exit code 1), with no traceback."""


class KdEdgeError(Exception):
    """A problem the user can fix: bad input file, unknown target, failed parity gate..."""


class InputFileError(KdEdgeError):
    """A file given by the user cannot be used. The message names the file and the problem."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
