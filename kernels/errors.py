"""The one exception type kernels raise for bad input (an unknown collective, a shape that does
not fit); harness.cli maps it to one line and exit code 2."""


class KernelInputError(ValueError):
    """Bad input to a kernel constructor: the message names the value."""
