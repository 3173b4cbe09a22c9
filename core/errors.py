"""One exception type for bad input, so callers and CLIs can show a clean message."""
import functools
import sys


class DataError(ValueError):
    """Bad input data. The message names the file and what is wrong with it."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # survive pickling across worker processes
        return (type(self), (self.path, self.problem))


def exit_on_data_error(main):
    """Decorate a CLI's main: bad input prints `error: <file>: <problem>` to stderr and exits 2, no traceback."""

    @functools.wraps(main)
    def run(argv=None):
        try:
            return main(argv)
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return run
