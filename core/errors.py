"""Exceptions for problems the user fixes (bad input, bad config, a full disk), so CLIs show one clean line.

The rule for every CLI: an `InputError` prints `error: <file>: <problem>` to stderr (progress bars
closed first, so the line never lands on a bar) and exits 2, without a traceback. argparse's own
usage errors keep argparse's exit 2. Anything else is a bug and keeps its traceback.
"""
import functools
import sys


class InputError(ValueError):
    """Base class: bad input data (DataError), a bad config (models.config.ConfigError), an unwritable file."""


class DataError(InputError):
    """Bad input data. The message names the file and what is wrong with it."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # survive pickling across worker processes
        return (type(self), (self.path, self.problem))


class WriteError(DataError):
    """An artifact could not be written (disk full, permission denied, read-only file system).

    Raised by core.io's atomic writes after the temporary file is removed: the previous file at
    `path`, if any, is unchanged. `errno` is the OSError's."""

    def __init__(self, path, problem, errno=None):
        self.errno = errno
        super().__init__(path, problem)

    def __reduce__(self):
        return (type(self), (self.path, self.problem, self.errno))


def close_progress_bars():
    """Close every live tqdm bar, so a message printed next starts on its own line."""
    tqdm_std = sys.modules.get("tqdm.std")
    if tqdm_std is None:
        return
    for bar in list(getattr(tqdm_std.tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # a half-built bar must not hide the real error
            pass


def print_error(e):
    """The rule's one line: `error: <file>: <problem>` on stderr, after closing progress bars."""
    close_progress_bars()
    sys.stdout.flush()
    print(f"error: {e}", file=sys.stderr, flush=True)


def exit_on_input_error(main):
    """Decorate a CLI's main: an InputError prints `error: <file>: <problem>` and exits 2, no traceback."""

    @functools.wraps(main)
    def run(argv=None):
        try:
            return main(argv)
        except InputError as e:
            print_error(e)
            return 2

    return run
