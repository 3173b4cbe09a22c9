"""One exception type for bad input, so callers and CLIs can show a clean message."""


class DataError(ValueError):
    """Bad input data. The message names the file and what is wrong with it."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # survive pickling across worker processes
        return (type(self), (self.path, self.problem))
