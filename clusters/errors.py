"""The one exception type the model raises for bad input (a catalog or model file, a plan, a
name): the message names the value and what is wrong with it, never a command-line flag.
harness.cli maps it, like every package's input error, to one line and exit code 2."""


class ModelInputError(ValueError):
    """Bad input to the projection model: a data file, a plan, an unknown name."""
