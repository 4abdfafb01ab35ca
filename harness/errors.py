"""User errors of the harness (a bad file, flag or name) and the tuple of every package's input
error, which the CLI catches in one place: one line naming the input, exit code 2. Bugs are other
exceptions and are not caught."""
from clusters.errors import ModelInputError
from kernels.errors import KernelInputError


class UserError(Exception):
    """Bad input from the user: a file, a flag, a name. The message names the input."""


# What harness.cli turns into one line and exit 2: input errors of all three packages.
INPUT_ERRORS = (UserError, ModelInputError, KernelInputError)
