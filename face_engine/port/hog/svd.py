"""dlib's own singular value decomposition, reproduced operation for operation in double precision.

dlib's HOG detector scans with a *separable* approximation of each 10×10 filter: it takes the SVD
of the filter (``svd3``), keeps the singular values above ``max(1e-4, 0.001·σ_max)`` and turns
each into a row filter ``v_j·√σ_j`` and a column filter ``u_j·√σ_j``, cast to float32. The
detection scores depend on those float32 values, so to match dlib bit for bit the decomposition
has to be dlib's, not LAPACK's (which gives the same factors to ~1e-16, enough to move the last
float32 bit of a few taps).

The wheel this project uses (``dlib-bin``) is built without LAPACK, so ``svd3`` runs dlib's
translation of the Golub–Reinsch Algol procedure (``svd4`` in ``dlib/matrix/matrix_la.h``): a
Householder bidiagonalisation followed by implicit-shift QR sweeps. Python floats are IEEE
doubles and the wheel has no FMA instructions, so repeating the same operations in the same
order reproduces its results exactly. Written from the algorithm as dlib spells it, including
the variables its inner loops reuse (``x``, ``y``, ``z``), which the order of updates depends on.
"""

from __future__ import annotations

import math
import sys

import numpy as np

__all__ = ["dlib_svd", "separable_filters"]

_EPS = sys.float_info.epsilon  # std::numeric_limits<double>::epsilon()
_TOL = sys.float_info.min / _EPS


def _householder(u: list[list[float]], q: list[float], e: list[float], m: int, n: int) -> tuple[float, float, int]:
    """Reduce u (m×n, in place) to bidiagonal form; returns (g, x, l) as the loop leaves them ("lo" is dlib's l)."""
    g = x = 0.0
    lo = 0
    for i in range(n):
        e[i] = g
        lo = i + 1
        s = 0.0
        for j in range(i, m):
            s += u[j][i] * u[j][i]
        if s < _TOL:
            g = 0.0
        else:
            f = u[i][i]
            g = math.sqrt(s) if f < 0 else -math.sqrt(s)
            h = f * g - s
            u[i][i] = f - g
            for j in range(lo, n):
                s = 0.0
                for k in range(i, m):
                    s += u[k][i] * u[k][j]
                f = s / h
                for k in range(i, m):
                    u[k][j] += f * u[k][i]
        q[i] = g
        s = 0.0
        for j in range(lo, n):
            s += u[i][j] * u[i][j]
        if s < _TOL:
            g = 0.0
        else:
            f = u[i][i + 1]
            g = math.sqrt(s) if f < 0 else -math.sqrt(s)
            h = f * g - s
            u[i][i + 1] = f - g
            for j in range(lo, n):
                e[j] = u[i][j] / h
            for j in range(lo, m):
                s = 0.0
                for k in range(lo, n):
                    s += u[j][k] * u[i][k]
                for k in range(lo, n):
                    u[j][k] += s * e[k]
        y = abs(q[i]) + abs(e[i])
        if y > x:
            x = y
    return g, x, lo


def _accumulate_right(u: list[list[float]], v: list[list[float]], e: list[float], n: int, g: float, lo: int) -> None:
    for i in range(n - 1, -1, -1):
        if g != 0.0:
            h = u[i][i + 1] * g
            for j in range(lo, n):
                v[j][i] = u[i][j] / h
            for j in range(lo, n):
                s = 0.0
                for k in range(lo, n):
                    s += u[i][k] * v[k][j]
                for k in range(lo, n):
                    v[k][j] += s * v[k][i]
        for j in range(lo, n):
            v[i][j] = v[j][i] = 0.0
        v[i][i] = 1.0
        g = e[i]
        lo = i


def _accumulate_left(u: list[list[float]], q: list[float], m: int, n: int) -> None:
    # The "skinny" U of svd3 (m×n): the extra-rows initialisation of a full U does not run.
    for i in range(n - 1, -1, -1):
        lo = i + 1
        g = q[i]
        for j in range(lo, n):
            u[i][j] = 0.0
        if g != 0.0:
            h = u[i][i] * g
            for j in range(lo, n):
                s = 0.0
                for k in range(lo, m):
                    s += u[k][i] * u[k][j]
                f = s / h
                for k in range(i, m):
                    u[k][j] += f * u[k][i]
            for j in range(i, m):
                u[j][i] /= g
        else:
            for j in range(i, m):
                u[j][i] = 0.0
        u[i][i] += 1.0


def _rotate(a: list[list[float]], rows: int, i0: int, i1: int, c: float, s: float) -> tuple[float, float]:
    """Apply a Givens rotation to columns i0, i1; returns the last (y, z) pair, which dlib's
    loop variables keep afterwards."""
    y = z = 0.0
    for j in range(rows):
        y = a[j][i0]
        z = a[j][i1]
        a[j][i0] = y * c + z * s
        a[j][i1] = -y * s + z * c
    return y, z


def _diagonalise(u: list[list[float]], q: list[float], e: list[float], v: list[list[float]],
                 m: int, n: int, x: float) -> int:
    eps = _EPS * x
    for k in range(n - 1, -1, -1):
        iteration = 0
        while True:  # test_f_splitting
            cancel = True
            lo = k
            while lo >= 0:
                if abs(e[lo]) <= eps:
                    cancel = False
                    break
                if abs(q[lo - 1]) <= eps:
                    break
                lo -= 1
            if cancel:  # cancellation of e[lo] if lo > 0
                c, s = 0.0, 1.0
                lo1 = lo - 1
                for i in range(lo, k + 1):
                    f = s * e[i]
                    e[i] *= c
                    if abs(f) <= eps:
                        break
                    g = q[i]
                    h = q[i] = math.sqrt(f * f + g * g)
                    c = g / h
                    s = -f / h
                    _rotate(u, m, lo1, i, c, s)
            z = q[k]  # test_f_convergence
            if lo == k:
                break
            iteration += 1
            if iteration > 300:
                return k
            x = q[lo]
            y = q[k - 1]
            g = e[k - 1]
            h = e[k]
            f = ((y - z) * (y + z) + (g - h) * (g + h)) / (2 * h * y)
            g = math.sqrt(f * f + 1.0)
            f = ((x - z) * (x + z) + h * (y / ((f - g) if f < 0 else (f + g)) - h)) / x
            c = s = 1.0
            for i in range(lo + 1, k + 1):
                g = e[i]
                y = q[i]
                h = s * g
                g *= c
                e[i - 1] = z = math.sqrt(f * f + h * h)
                c = f / z
                s = h / z
                f = x * c + g * s
                g = -x * s + g * c
                h = y * s
                y *= c
                x, z = _rotate(v, n, i - 1, i, c, s)
                q[i - 1] = z = math.sqrt(f * f + h * h)
                if z != 0:
                    c = f / z
                    s = h / z
                f = c * g + s * y
                x = -s * g + c * y
                y, z = _rotate(u, m, i - 1, i, c, s)
            e[lo] = 0.0
            e[k] = f
            q[k] = x
        if z < 0.0:  # convergence: make q[k] non-negative
            q[k] = -z
            for j in range(n):
                v[j][k] = -v[j][k]
    return 0


def dlib_svd(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``svd3(a, u, w, v)`` for an m×n matrix with m ≥ n: a = u·diag(w)·vᵀ, unsorted as dlib leaves it."""
    m, n = a.shape
    if m < n:
        raise ValueError("dlib_svd needs rows ≥ columns (svd3 transposes otherwise; not needed here)")
    u = [[float(a[i, j]) for j in range(n)] for i in range(m)]
    q = [0.0] * n
    e = [0.0] * n
    v = [[0.0] * n for _ in range(n)]
    g, x, lo = _householder(u, q, e, m, n)
    _accumulate_right(u, v, e, n, g, lo)
    _accumulate_left(u, q, m, n)
    if _diagonalise(u, q, e, v, m, n, x):
        raise ArithmeticError("dlib's SVD did not converge")
    return np.array(u), np.array(q), np.array(v)


def separable_filters(f: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """dlib's ``build_fhog_filterbank`` for one plane: (row filters, column filters), float32.

    Columns are sorted by singular value, largest first (``rsort_columns``); values below
    ``max(1e-4, 0.001·σ_max)`` are dropped (``round_zeros``).
    """
    u, w, v = dlib_svd(np.asarray(f, dtype=np.float64))
    # std::sort over reverse iterators: descending; singular values are distinct in practice.
    order = sorted(range(len(w)), key=lambda j: w[j], reverse=True)
    w, u, v = w[order], u[:, order], v[:, order]
    thresh = max(1e-4, float(w.max()) * 0.001)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for j in range(len(w)):
        if w[j] >= thresh or w[j] <= -thresh:
            root = math.sqrt(w[j])
            cols.append((u[:, j] * root).astype(np.float32))
            rows.append((v[:, j] * root).astype(np.float32))
    return rows, cols
