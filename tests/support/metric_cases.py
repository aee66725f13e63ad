"""Shared inputs of the metric tests: numpy float64 arrays with the awkward cases in them."""

import numpy as np
import torch

# (dtype, relative tolerance, absolute tolerance)
PRECISIONS = [(torch.float64, 1e-6, 1e-9), (torch.float32, 1e-4, 1e-4)]


def profile_case(n_tracks, length=37, seed=0):
    """Logits and counts ``(7, S, L)``: ties, a zero-count region, large counts, a uniform prediction.

    Region 0: random; 1: no counts at all; 2: rounded logits (tied probabilities); 3: large
    counts (~2000 per position); 4: first track empty (S > 1); 5: a single read; 6: constant
    logits (uniform prediction). Logits carry a large offset (they are not normalised).
    """
    rng = np.random.default_rng(seed)
    shape = (7, n_tracks, length)
    logits = rng.normal(size=shape) * 3 + 40
    logits[2] = np.round(logits[2] / 2)
    logits[6] = 5.0
    counts = rng.poisson(rng.gamma(0.5, 4, size=shape)).astype(np.float64)
    counts[1] = 0
    counts[3] = rng.poisson(2000, size=shape[1:])
    if n_tracks > 1:
        counts[4, 0] = 0
    counts[5] = 0
    counts[5, 0, length // 2] = 1
    return logits, counts


def softmax(logits, axis=-1):
    """Reference softmax in float64 numpy."""
    z = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def as_tensors(dtype, *arrays):
    """The numpy arrays as torch tensors of ``dtype``."""
    return [torch.as_tensor(a, dtype=dtype) for a in arrays]


def assert_close(actual, expected, rtol, atol):
    """NaN-aware comparison of a torch result with a numpy reference."""
    np.testing.assert_allclose(actual.double().numpy(), np.asarray(expected, dtype=np.float64),
                               rtol=rtol, atol=atol, equal_nan=True)
