"""Gaussian smoothing along positions, as bpnet-lite's ``smooth_gaussian1d`` (sigma 7, width 81)."""

import torch

DEFAULT_SIGMA = 7.0
DEFAULT_WIDTH = 81


def gaussian_kernel(sigma=DEFAULT_SIGMA, width=DEFAULT_WIDTH, dtype=torch.float32, device=None):
    """``w_j = exp(-((j - (width-1)/2) / sigma)^2 / 2) / sum_j(...)`` for ``j = 0..width-1``.

    Parameters
    ----------
    sigma : float
        Standard deviation, in positions.
    width : int
        Number of taps.
    dtype, device
        Of the returned kernel.

    Returns
    -------
    kernel : torch.Tensor, shape=(width,)
        Sums to 1.
    """
    offset = torch.arange(width, dtype=dtype, device=device) - (width - 1) / 2
    kernel = torch.exp(-0.5 * (offset / sigma) ** 2)
    return kernel / kernel.sum()


def smooth_gaussian1d(x, sigma=DEFAULT_SIGMA, width=DEFAULT_WIDTH):
    """``y_i = sum_j w_j x_{i + j - floor((width-1)/2)}`` along the last axis, zero outside ``0..L-1``.

    Same-length convolution with zero padding (``conv1d(padding="same")``), each track and region
    smoothed on its own, as bpnet-lite. Mass near the ends leaks out: a smoothed probability
    profile sums to slightly less than 1.

    Parameters
    ----------
    x : torch.Tensor, shape=(..., L)
        Predicted probabilities or observed counts.
    sigma : float
        Standard deviation of the kernel (bpnet-lite default 7).
    width : int
        Kernel width (bpnet-lite default 81).

    Returns
    -------
    smoothed : torch.Tensor, shape=(..., L)
        Same dtype and device as ``x``.
    """
    kernel = gaussian_kernel(sigma, width, dtype=x.dtype, device=x.device).reshape(1, 1, width)
    left = (width - 1) // 2  # conv1d(padding="same")'s split, without its even-width copy warning
    flat = torch.nn.functional.pad(x.reshape(-1, 1, x.shape[-1]), (left, width - 1 - left))
    return torch.nn.functional.conv1d(flat, kernel).reshape(x.shape)
