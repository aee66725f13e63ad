"""Sort orders along the last axis, positions of nonzeros, gathers and scatters at flat positions: numpy's vectorised
code on the CPU, torch's elsewhere.

numpy's ``argsort`` (x86-simd-sort: AVX-512/AVX2 quicksort) orders rows of a few thousand values
several times faster than torch's CPU sort, but leaves equal values in no particular order. Where
the order of ties matters, ``stable_order`` restores torch's stable order exactly (equal values by
position) with one more sort of distinct int64 keys. Every function returns the same positions as
the torch sort it replaces, on every device.
"""

import numpy as np
import torch


def by_numpy(x):
    """Whether numpy takes ``x``: a CPU tensor of a dtype numpy has (not bfloat16)."""
    return x.device.type == "cpu" and x.dtype != torch.bfloat16


def take_in_rows(values, positions):
    """``np.take_along_axis(values, positions, -1)`` of numpy arrays ``(R, n)`` by flat position (``np.take``: about
    twice as fast)."""
    return np.take(values, positions + (np.arange(len(positions)) * values.shape[-1])[:, None])


def side_by_side(row, per_row, width):
    """Flat places in an ``(R, width)`` array for entries listed row by row (``row``: each one's row, ascending;
    ``per_row``: how many each of the ``R`` rows holds, at most ``width``): each row's entries at its start, in
    their order."""
    return row * width + np.arange(len(row)) - (np.cumsum(per_row) - per_row)[row]


def any_order(x):
    """Indices sorting ``x`` ascending along the last axis, ties in no promised order (NaN last).

    Where no two values of a row are equal (e.g. distinct random keys), this is the one sorting
    permutation, the same as ``torch.argsort(x, dim=-1)``.

    Parameters
    ----------
    x : torch.Tensor, shape=(..., n)

    Returns
    -------
    order : torch.Tensor, shape=(..., n), int64
    """
    if not by_numpy(x):
        return torch.argsort(x, dim=-1)
    return torch.from_numpy(array_order(x.detach().numpy()))


def array_order(values):
    """``any_order`` of a numpy array: by one sort of packed keys where ``_packed_order`` takes the values, else
    ``argsort``."""
    order = _packed_order(values)
    return np.argsort(values, axis=-1) if order is None else order


def _packed_order(values):
    """An ascending order of int64 values or non-negative float64 values along the last axis by one sort of the
    values themselves (several times faster than ``argsort``): each value's int64 bits (in the order of the
    values, -0.0 first) keep their high bits and carry the position in the low ones. Where two sorted entries
    share their high bits, they are ties (ordered by position: a sorting order still) or values closer than the
    dropped bits, which may be out of order: rows whose values that order leaves unsorted are ordered again by
    their dropped bits too (``_order_close_values``). None for other dtypes or values."""
    n = values.shape[-1]
    bits = max(1, (n - 1).bit_length())
    if values.size == 0 or bits > 24:
        return None
    if values.dtype == np.float64 and bool((values >= 0).all()):  # no NaN, no negative number
        keys = values.view(np.int64)
    elif values.dtype == np.int64:
        keys = values
    else:
        return None
    keys = keys.reshape(-1, n)
    packed = (keys >> bits) << bits
    packed |= np.arange(n)
    packed.sort(axis=-1)
    high = packed >> bits
    order = packed & ((1 << bits) - 1)
    shared = np.flatnonzero((high[:, 1:] == high[:, :-1]).any(axis=-1))
    if shared.size:
        rows = values.reshape(-1, n)[shared]
        ordered = take_in_rows(rows, order[shared])
        unsorted = np.flatnonzero((ordered[:, 1:] < ordered[:, :-1]).any(axis=-1))
        if unsorted.size:
            redo = shared[unsorted]
            order[redo] = (_order_close_values(keys[redo], order[redo], high[redo], bits) if 3 * bits < 63
                           else np.argsort(rows[unsorted], axis=-1))
    return order.reshape(values.shape)


def _order_close_values(keys, order, high, bits):
    """The ascending order of int64 ``keys`` ``(m, n)`` from ``order``, which sorts them by their high bits
    (``keys >> bits``, ``high`` in that order) alone: one more sort of packed int64 words, each holding the rank of
    its entry's high bits in its row, its low bits and its sorted position, so that entries sharing their high bits
    come out by their low bits too (ties by position, as before)."""
    n = order.shape[-1]
    mask = (1 << bits) - 1
    packed = np.zeros(order.shape, np.int64)  # the rank of each sorted entry's high bits
    np.cumsum(high[:, 1:] != high[:, :-1], axis=-1, out=packed[:, 1:])
    packed <<= 2 * bits
    packed |= (take_in_rows(keys, order) & mask) << bits
    packed |= np.arange(n)
    packed.sort(axis=-1)
    return take_in_rows(order, packed & mask)


def distinct_order(x):
    """``torch.argsort(x, dim=-1)`` of int64 values distinct within each row (e.g. random keys): their one order.

    On the CPU by one sort of 32-bit words (twice as fast as 64-bit ones): each holds a value's high bits (in signed
    order) above its position. Two values sharing those bits come out by position; each such pair is then put in
    the order of the whole values, and a row with three or more sharing them is sorted by ``any_order``.

    Parameters
    ----------
    x : torch.Tensor, shape=(..., n), int64
        No two values of a row equal (equal ones come out in no promised order).

    Returns
    -------
    order : torch.Tensor, shape=(..., n), int64
    """
    n = x.shape[-1]
    bits = max(1, (n - 1).bit_length())
    if not by_numpy(x) or x.dtype != torch.int64 or x.numel() == 0 or bits > 16:
        return any_order(x)
    rows = x.detach().numpy().reshape(-1, n)
    words = (rows.view(np.uint64) >> np.uint64(32 + bits)).astype(np.uint32)
    words ^= np.uint32(1 << (31 - bits))  # the sign bit flipped: signed order as unsigned
    words <<= np.uint32(bits)
    words |= np.arange(n, dtype=np.uint32)
    words.sort(axis=-1)
    order = (words & np.uint32((1 << bits) - 1)).astype(np.int64)
    words >>= np.uint32(bits)
    shared = words[:, 1:] == words[:, :-1]
    row, k = np.divmod(np.flatnonzero(shared), n - 1)  # (2-D nonzero is several times slower)
    if row.size:
        runs = np.flatnonzero((shared[:, 1:] & shared[:, :-1]).any(axis=-1))  # three or more sharing their bits
        if runs.size:
            order[runs] = any_order(torch.from_numpy(rows[runs])).numpy()
            pairs = ~np.isin(row, runs)
            row, k = row[pairs], k[pairs]
        first, second = order[row, k], order[row, k + 1]
        swap = rows[row, first] > rows[row, second]
        order[row[swap], k[swap]] = second[swap]
        order[row[swap], k[swap] + 1] = first[swap]
    return torch.from_numpy(order.reshape(x.shape))


def orders_by_track(order, n_tracks):
    """The positions of each track in the order of ``order``: ``(B, S*L)`` positions of ``S`` tracks of ``L`` (track
    ``s`` at ``s*L .. s*L + L - 1``) → ``(B, S, L)`` positions within each track, in the order they come in ``order``.
    From a sorting order of distinct values of the ``S*L`` positions this is each track's own sorting order.

    Parameters
    ----------
    order : torch.Tensor, shape=(B, S*L), int64
        Each row a permutation of ``0 .. S*L - 1``.
    n_tracks : int

    Returns
    -------
    per_track : torch.Tensor, shape=(B, S, L), int64
    """
    rows, n = order.shape
    length = n // n_tracks
    if n_tracks == 1:
        return order.reshape(rows, 1, length)
    starts = np.arange(n_tracks) * length
    if by_numpy(order):  # a stable sort of small integers (numpy's radix sort, one pass), gathered by flat position
        values = order.numpy()
        track = (values >= length).view(np.int8) if n_tracks == 2 else (values // length).astype(
            np.int8 if n_tracks < 128 else np.int32)
        by_track = take_in_rows(values, np.argsort(track, axis=-1, kind="stable")).reshape(rows, n_tracks, length)
        by_track -= starts[:, None]
        return torch.from_numpy(by_track)
    track = torch.div(order, length, rounding_mode="floor")
    by_track = torch.gather(order, -1, torch.sort(track, dim=-1, stable=True).indices)
    return by_track.reshape(rows, n_tracks, length) - torch.from_numpy(starts).to(order.device)[:, None]


def any_sort(x):
    """``(values, order)``: ``x`` sorted ascending along the last axis and ``any_order(x)``."""
    order = any_order(x)
    return torch.gather(x, -1, order), order


def sort_by(x, order):
    """``any_sort(x)`` of rows ``x`` ``(R, n)`` from a candidate ``order`` of them (e.g. one sorting values that rise
    and fall with ``x``): ``(x gathered by order, order)`` in the rows that order leaves ascending, and by
    ``any_sort`` in the others (out of order, or holding a NaN)."""
    if not by_numpy(x):
        ordered = torch.gather(x, -1, order)
        unsorted = torch.nonzero(~(ordered[:, 1:] >= ordered[:, :-1]).all(dim=-1)).flatten()  # NaN compares false
        if unsorted.numel():
            order = order.clone()
            ordered[unsorted], order[unsorted] = any_sort(x[unsorted])
        return ordered, order
    positions = order.numpy()
    ordered = take_in_rows(x.detach().numpy(), positions)
    unsorted = np.flatnonzero(~(ordered[:, 1:] >= ordered[:, :-1]).all(axis=-1))  # NaN compares false
    if unsorted.size:
        redone, again = any_sort(x[torch.from_numpy(unsorted)])
        positions = positions.copy()
        ordered[unsorted], positions[unsorted] = redone.numpy(), again.numpy()
    return torch.from_numpy(ordered), torch.from_numpy(positions)


def stable_order(x):
    """``torch.sort(x, dim=-1, stable=True).indices``: ascending, equal values (and NaNs, last) by position.

    On the CPU: any sorting order (``any_order``), then, within each run of equal sorted values
    (group ``g``, numbered along the row), the positions sorted by one sort of the distinct keys
    ``g * n + position``, which keeps the groups in place. Shapes and dtype as ``any_order``.
    """
    if not by_numpy(x):
        return torch.sort(x, dim=-1, stable=True).indices
    ordered, order = any_sort(x)
    ordered = ordered.detach().numpy()
    group = np.zeros(order.shape, dtype=np.int64)
    new_group = ordered[..., 1:] != ordered[..., :-1]
    if ordered.dtype.kind == "f" and ordered.size and np.isnan(ordered[..., -1]).any():  # NaN sorts last
        new_group &= ~(np.isnan(ordered[..., 1:]) & np.isnan(ordered[..., :-1]))  # NaNs: one group
    np.cumsum(new_group, axis=-1, out=group[..., 1:])
    group *= x.shape[-1]
    keys = group + order.numpy()
    keys.sort(axis=-1)
    keys -= group
    return torch.from_numpy(keys)


def torch_order(x):
    """``torch.argsort(x, dim=-1)``: torch's default (unstable) sort, whose order of ties is its own.

    A row with no two equal values (and no NaN) has one sorting order, taken from ``any_sort``; only the
    other rows go through torch's sort (all of them where every value is a whole number, as counts, which
    tie by nature). Shapes and dtype as ``any_order``.
    """
    if not by_numpy(x) or x.numel() == 0 or not x.dtype.is_floating_point or torch.equal(x, torch.floor(x)):
        return torch.argsort(x, dim=-1)
    rows = x.reshape(-1, x.shape[-1])
    ordered, order = any_sort(rows)
    tied = (ordered[:, 1:] == ordered[:, :-1]).any(dim=-1) | torch.isnan(ordered[:, -1])  # NaN sorts last
    redo = torch.nonzero(tied).flatten()
    if redo.numel():
        order[redo] = torch.argsort(rows[redo], dim=-1)
    return order.reshape(x.shape)


def flat_nonzero(mask):
    """``torch.nonzero(mask.flatten()).flatten()``: the flat positions where a bool tensor is true, ascending
    (numpy's ``flatnonzero`` on the CPU, several times faster than torch's)."""
    if not by_numpy(mask):
        return torch.nonzero(mask.flatten()).flatten()
    return torch.from_numpy(np.flatnonzero(mask.numpy()))


def count_true(mask):
    """``int(torch.count_nonzero(mask))`` of a bool tensor (numpy's count on the CPU, several times faster)."""
    if not by_numpy(mask):
        return int(torch.count_nonzero(mask))
    return int(np.count_nonzero(mask.numpy()))


def nonzero_mask(x):
    """``x != 0`` (numpy's comparison on the CPU, several times faster than torch's)."""
    if not by_numpy(x):
        return x != 0
    return torch.from_numpy(x.detach().numpy() != 0)


def take_flat(x, positions):
    """``x.reshape(-1)[positions]``: the values of a contiguous tensor at flat positions (numpy's ``take`` on the CPU,
    several times faster than torch's indexing)."""
    if not by_numpy(x):
        return x.reshape(-1)[positions]
    return torch.from_numpy(np.take(x.detach().numpy().reshape(-1), positions.numpy()))


def put_flat(x, positions, values):
    """``x`` with ``x.reshape(-1)[positions] = values``, in place (a contiguous tensor; numpy on the CPU)."""
    if not by_numpy(x):
        x.reshape(-1)[positions] = values
        return x
    x.detach().numpy().reshape(-1)[positions.numpy()] = values.detach().numpy()
    return x
