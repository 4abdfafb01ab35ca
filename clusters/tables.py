"""Evaluating an expensive scalar function once per distinct row of a key table.

The cost model works on tables of plans (numpy columns, one row per plan); the expensive parts
(a layer's GEMM, attention and communication times, a memory model per activation layout)
depend on a few columns with few distinct values. `by_unique` computes them once per distinct
key row and broadcasts the results back to every row.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def by_unique(keys: np.ndarray, compute: Callable[[tuple], tuple]) -> np.ndarray:
    """compute(one key row as a tuple of ints) -> tuple of floats, evaluated once per distinct
    row of `keys` (n x k integers); returns an n x (len of the tuple) float array."""
    keys = np.asarray(keys, dtype=np.int64)
    if keys.ndim != 2 or len(keys) == 0:
        raise ValueError(f"by_unique: keys must be a non-empty 2-D array, got shape {keys.shape}")
    _, first, inverse = np.unique(_codes(keys), return_index=True, return_inverse=True)
    table = np.asarray([compute(tuple(int(x) for x in keys[i])) for i in first], dtype=float)
    return table[inverse.reshape(-1)]


def _codes(keys: np.ndarray) -> np.ndarray:
    """One int64 per row (mixed radix), so np.unique works on a flat array; rows that would
    overflow the radix product fall back to a row-wise unique."""
    lo = keys.min(axis=0)
    radix = keys.max(axis=0) - lo + 1
    if float(np.prod(radix.astype(float))) >= 2.0**62:
        _, inverse = np.unique(keys, axis=0, return_inverse=True)
        return inverse.reshape(-1)
    code = np.zeros(len(keys), dtype=np.int64)
    for j in range(keys.shape[1]):
        code = code * int(radix[j]) + (keys[:, j] - lo[j])
    return code
