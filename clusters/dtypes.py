"""Number formats the model knows and the bytes one element of each takes: the one table every
byte count (weights, GEMM operands, KV cache, expert dispatch, activations) reads."""
from __future__ import annotations

from clusters.errors import ModelInputError

# fp8 is e4m3/e5m2 (NVIDIA); int8 is the 910C's 8-bit GEMM format (CloudMatrix-Infer's W8A8)
BYTES_PER_ELEMENT = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}
DTYPES = tuple(BYTES_PER_ELEMENT)


def bytes_per_element(dtype: str) -> int:
    try:
        return BYTES_PER_ELEMENT[dtype]
    except KeyError:
        raise ModelInputError(f"unknown number format {dtype!r} (known: {', '.join(DTYPES)})") from None
