"""The one exception type for user errors (bad file, bad flag, unknown name).

The CLI catches it once and prints one line naming the input and the problem, exit code 2.
Bugs are other exceptions and are not caught.
"""


class UserError(Exception):
    """Bad input from the user: a file, a flag, a name. The message names the input."""
