"""``ln |Gamma(x)|`` of float64 values in numpy, vectorised and exact to a few ulps: the MNLL's ``lgamma(k + 1)`` of
counts off the log-factorial table (a normalised track's non-integer counts, counts beyond the table), without torch.

The algorithm of CPython's ``math.lgamma`` (Lanczos' approximation) away from lgamma's zeros, a series near them,
the reflection formula below 0; computed once per run of equal neighbours, or once per distinct value where values
repeat a few (``lgamma``). Every element's result depends on its own value only.
"""

from typing import Optional

import numpy as np

# Lanczos' approximation of the Gamma function that CPython's ``math.lgamma`` uses (Modules/mathmodule.c; Godfrey's
# coefficients, g = 6.0246..., 13 terms): ``ln Gamma(x) = ln S(x) - g + (x - 1/2) (ln(x + g - 1/2) - 1)`` for x > 0,
# ``S = num / den`` a rational function of x. The denominator is x (x + 1) ... (x + 11).
LANCZOS_G = 6.024680040776729583740234375
LANCZOS_NUMERATOR = (
    23531376880.410759688572007674451636754734846804940, 42919803642.649098768957899047001988850926355848959,
    35711959237.355668049440185451547166705960488635843, 17921034426.037209699919755754458931112671403265390,
    6039542586.3520280050642916443072979210699388420708, 1439720407.3117216736632230727949123939715485786772,
    248874557.86205415651146038641322942321632125127801, 31426415.585400194380614231628318205362874684987640,
    2876370.6289353724412254090516208496135991145378768, 186056.26539522349504029498971604569928220784236328,
    8071.6720023658162106380029022722506138218516325024, 210.82427775157934587250973392071336271166969580291,
    2.5066282746310002701649081771338373386264310793408)
LANCZOS_DENOMINATOR = (0.0, 39916800.0, 120543840.0, 150917976.0, 105258076.0, 45995730.0, 13339535.0, 2637558.0,
                       357423.0, 32670.0, 1925.0, 66.0, 1.0)
LN_PI = 1.144729885849400174143427351353058711647
# lgamma(2 + e) = sum_k c_k e^k, c_1 = 1 - Euler's gamma, c_k = (-1)^k (zeta(k) - 1) / k (40-digit mpmath, rounded):
# for |e| <= 1/2 the terms fall by 4x each, 28 of them reach float64. Lanczos' formula cancels near lgamma's zeros
# (x = 1, 2: 7e-15 off where the value is 1e-12), which a normalised track's counts (k + 1 near 1) sit on.
LGAMMA_SERIES = (
    0.42278433509846713, 0.3224670334241132, -0.0673523010531981, 0.020580808427784546, -0.007385551028673986,
    0.0028905103307415234, -0.001192753911703261, 0.0005096695247430425, -0.00022315475845357939,
    9.945751278180853e-05, -4.492623673813314e-05, 2.050721277567069e-05, -9.439488275268397e-06,
    4.374866789907488e-06, -2.039215753801366e-06, 9.55141213040742e-07, -4.492469198764566e-07,
    2.1207184805554665e-07, -1.0043224823968099e-07, 4.7698101693639804e-08, -2.2711094608943164e-08,
    1.0838659214896955e-08, -5.183475041970047e-09, 2.4836745438024785e-09, -1.1921401405860912e-09,
    5.731367241678862e-10, -2.7595228851242334e-10, 1.330476437424449e-10)
SERIES_FROM, SERIES_BELOW = 0.5, 3.5  # lgamma of x in this range from the series (``lgamma_near_its_zeros``)
TINY_GAMMA = 1e-20  # below it, ln |Gamma(x)| = -ln |x| in float64
LGAMMA_CHUNK = 1 << 14  # values per step of ``lgamma``: its seventy passes run from the CPU cache
RUNS_SHARED = 0.5  # ``lgamma`` computes once per run of equal neighbours where runs are at most this share of values
# ``lgamma`` of many values (``BY_VALUE_FROM``) computes once per distinct value, looked up by its bits in a table of
# ``BY_VALUE_SLOTS``, where a sample of ``BY_VALUE_SAMPLE`` of them holds at most ``BY_VALUE_DISTINCT`` distinct values
BY_VALUE_FROM, BY_VALUE_SAMPLE, BY_VALUE_DISTINCT, BY_VALUE_SLOTS = 1 << 13, 1 << 8, 1 << 6, 1 << 12
_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits of bits x this pick the slot


def lanczos_sum(x: np.ndarray) -> np.ndarray:
    """Lanczos' ``S(x) = num(x) / den(x)`` for ``x > 0``: Horner's rule in ``x`` below 5, in ``1 / x`` from 5 (no
    overflow; more accurate), as CPython evaluates it."""
    low = x < 5.0
    if not low.all() and low.any():  # by positions, as ``_lgamma_piece``
        parts = np.empty_like(x)
        below, above = np.flatnonzero(low), np.flatnonzero(~low)
        parts[below], parts[above] = lanczos_sum(x.take(below)), lanczos_sum(x.take(above))
        return parts
    ascending = bool(low.all())
    step = np.multiply if ascending else np.divide
    num, den = np.zeros_like(x), np.zeros_like(x)
    for i in (range(len(LANCZOS_NUMERATOR) - 1, -1, -1) if ascending else range(len(LANCZOS_NUMERATOR))):
        step(num, x, out=num)
        num += LANCZOS_NUMERATOR[i]
        step(den, x, out=den)
        den += LANCZOS_DENOMINATOR[i]
    num /= den
    return num


def lgamma_near_its_zeros(x: np.ndarray) -> np.ndarray:
    """``lgamma`` of ``0.5 <= x < 3.5`` from the series of ``lgamma(2 + e)`` (``LGAMMA_SERIES``, ``|e| <= 1/2``),
    shifted by one either way: ``lgamma(x) = lgamma(x + 1) - ln x`` below 1.5, ``lgamma(x - 1) + ln(x - 1)`` from 2.5 (``e`` and
    ``x - 1`` are exact); within a few ulps, also near the zeros 1 and 2."""
    centre = np.floor(x + 0.5)  # 1, 2 or 3
    e = x - centre
    series = np.full_like(e, LGAMMA_SERIES[-1])
    for c in LGAMMA_SERIES[-2::-1]:
        series *= e
        series += c
    series *= e
    # both logarithms of every value (no boolean indexing), of numbers >= 0.5 (a logarithm of 0 or less is slow)
    series += np.where(centre == 1.0, -np.log(x), np.where(centre == 3.0, np.log(np.maximum(x - 1.0, 1.0)), 0.0))
    return series


def lgamma(x: np.ndarray) -> np.ndarray:
    """``ln |Gamma(x)|`` of float64 values, vectorised: the algorithm of CPython's ``math.lgamma`` (Lanczos'
    approximation, ``lanczos_sum``; the reflection formula below 0), except near its zeros (``0.5 <= |x| < 3.5``: a
    series, ``lgamma_near_its_zeros``), in cache-sized chunks; runs of equal values computed once, and values drawn
    from a few distinct ones once per distinct value (``_lgamma_by_value``).

    Within a few ulps of the exact value everywhere; from 3.5 up equal to ``math.lgamma`` for all but about 1 value
    in 1,000 (which differ by an ulp of numpy's ``log``). +inf at the poles (0, -1, -2, ...), at +-inf and where it
    overflows float64 (x > 2.5e305; ``math.lgamma`` raises there), NaN for NaN.

    Parameters
    ----------
    x : numpy.ndarray

    Returns
    -------
    lgamma : numpy.ndarray, float64, shape of ``x``
    """
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(-1)
    starts = run_starts(flat)
    if flat.size and len(starts) <= RUNS_SHARED * flat.size:  # runs of equal values (bedGraph intervals): once each
        return np.repeat(lgamma(flat[starts]), np.diff(starts, append=flat.size)).reshape(x.shape)
    by_value = _lgamma_by_value(flat) if flat.size >= BY_VALUE_FROM else None
    return (_lgamma_pieces(flat) if by_value is None else by_value).reshape(x.shape)


def _lgamma_pieces(flat: np.ndarray) -> np.ndarray:
    """``lgamma`` of 1-d values, cache-sized pieces at a time."""
    out = np.empty(flat.shape)
    for a in range(0, flat.size, LGAMMA_CHUNK):
        out[a:a + LGAMMA_CHUNK] = _lgamma_piece(flat[a:a + LGAMMA_CHUNK])
    return out


def _lgamma_by_value(flat: np.ndarray) -> Optional[np.ndarray]:
    """``lgamma`` of 1-d values drawn from a few distinct ones (a normalised track: read counts times a scale), each
    distinct value of a sample computed once and looked up by its bits in a direct-mapped table (the rest computed as
    they are); None where the sample has more than ``BY_VALUE_DISTINCT`` distinct values. Every value gets the bits
    ``_lgamma_piece`` gives it (an element's result does not depend on the others)."""
    bits = flat.view(np.uint64)
    distinct = np.unique(bits[::max(1, flat.size // BY_VALUE_SAMPLE)])
    if len(distinct) > BY_VALUE_DISTINCT:
        return None
    shift = np.uint64(64 - (BY_VALUE_SLOTS.bit_length() - 1))
    slots, first = np.unique((distinct * _HASH_MULTIPLIER) >> shift, return_index=True)  # one value a slot
    # an empty slot holds a key that hashes elsewhere (the first slot's), so no value looked up there matches it
    keys, values = np.full(BY_VALUE_SLOTS, distinct[first[0]]), np.zeros(BY_VALUE_SLOTS)
    keys[slots] = distinct[first]
    slot = ((bits * _HASH_MULTIPLIER) >> shift).astype(np.intp)
    missed = np.flatnonzero(keys.take(slot) != bits)
    # the table's values and the missed ones computed together (a call costs ~70 numpy passes, however few values)
    computed = _lgamma_pieces(np.concatenate([distinct[first].view(np.float64), flat.take(missed)]))
    values[slots] = computed[:len(slots)]
    out = values.take(slot)
    out[missed] = computed[len(slots):]
    return out


def run_starts(values: np.ndarray) -> np.ndarray:
    """Where each run of equal neighbours of a 1-d array begins (NaN never equals its neighbour)."""
    change = np.ones(values.size, dtype=bool)
    np.not_equal(values[1:], values[:-1], out=change[1:])
    return np.flatnonzero(change)


def _lgamma_piece(x: np.ndarray) -> np.ndarray:
    """``lgamma`` of one chunk (1-d)."""
    size = np.abs(x)
    ordinary = (size >= TINY_GAMMA) & (size < np.inf)  # NaN is not
    every = bool(ordinary.all())
    a = size if every else np.where(ordinary, size, 1.0)
    near = (a >= SERIES_FROM) & (a < SERIES_BELOW)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if near.all():
            r = lgamma_near_its_zeros(a)
        elif not near.any():
            r = _lanczos_lgamma(a)
        else:  # by positions: numpy's boolean indexing is several times slower
            r = np.empty_like(a)
            inside, outside = np.flatnonzero(near), np.flatnonzero(~near)
            r[inside], r[outside] = lgamma_near_its_zeros(a.take(inside)), _lanczos_lgamma(a.take(outside))
        negative = x < 0
        if negative.any():  # reflection: ln pi - ln |sin(pi x)| - ln |x| - lgamma(|x|); |x| - round(|x|) is exact
            b = a[negative]
            r[negative] = LN_PI - np.log(np.abs(np.sin(np.pi * (b - np.round(b))))) - np.log(b) - r[negative]
        if not every:
            r = np.where(ordinary, r, np.where(np.isnan(x), x, np.inf))
            tiny = size < TINY_GAMMA
            r[tiny] = -np.log(size[tiny])  # +inf at 0
        whole = x == np.floor(x)
        if whole.any():
            r[whole & (x <= 0)] = np.inf
            r[(x == 1.0) | (x == 2.0)] = 0.0
    return r


def _lanczos_lgamma(a: np.ndarray) -> np.ndarray:
    """``ln S(a) - g + (a - 1/2) (ln(a + g - 1/2) - 1)`` for ``a > 0``, in CPython's order of operations (+inf where it
    overflows)."""
    r = np.log(lanczos_sum(a))
    r -= LANCZOS_G
    rest = a + LANCZOS_G
    rest -= 0.5
    np.log(rest, out=rest)
    rest -= 1.0
    rest *= a - 0.5
    r += rest
    return r
