"""A linear program held as arrays: columns with bounds, rows in coordinate form, named costs.

The site formulation fills one; the portfolio stacks several and adds coupling rows.
Building from numpy arrays (not one Python object per term) is what keeps a year of
15-minute steps cheap to build. Nothing here knows a solver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

INF = np.inf
# Coefficients below this are noise (a price of 1e-299 is zero): HiGHS scales by them and,
# fed one, has returned a wrong "optimal" plan.
TINY = 1e-12


@dataclass(frozen=True, eq=False)
class Matrix:
    """The assembled program, column-wise (CSC), ready for a solver."""

    col_lower: np.ndarray
    col_upper: np.ndarray
    integrality: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    starts: np.ndarray
    indices: np.ndarray
    values: np.ndarray

    @property
    def num_cols(self) -> int:
        return len(self.col_lower)

    @property
    def num_rows(self) -> int:
        return len(self.row_lower)

    @property
    def num_nonzeros(self) -> int:
        return len(self.values)


class LinearProgram:
    """Columns and rows added in blocks; costs kept per named objective term."""

    def __init__(self) -> None:
        self.num_cols = 0
        self.num_rows = 0
        self._col_lower: list[np.ndarray] = []
        self._col_upper: list[np.ndarray] = []
        self._integer: list[np.ndarray] = []
        self._row_lower: list[np.ndarray] = []
        self._row_upper: list[np.ndarray] = []
        self._r: list[np.ndarray] = []
        self._c: list[np.ndarray] = []
        self._v: list[np.ndarray] = []
        self._costs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}

    def add_cols(
        self, n: int, lower: float | np.ndarray = 0.0, upper: float | np.ndarray = INF, integer: bool = False
    ) -> np.ndarray:
        idx = np.arange(self.num_cols, self.num_cols + n)
        self._col_lower.append(np.broadcast_to(np.asarray(lower, dtype=float), (n,)))
        self._col_upper.append(np.broadcast_to(np.asarray(upper, dtype=float), (n,)))
        self._integer.append(np.full(n, 1 if integer else 0, dtype=np.int32))
        self.num_cols += n
        return idx

    def add_rows(
        self,
        n: int,
        terms: Sequence[tuple[np.ndarray, np.ndarray, float | np.ndarray]],
        lower: float | np.ndarray = -INF,
        upper: float | np.ndarray = INF,
    ) -> np.ndarray:
        """`n` rows; each term is (local row index 0..n-1, column index, coefficient)."""
        first = self.num_rows
        for rows, cols, coef in terms:
            rows = np.asarray(rows, dtype=np.int64)
            cols = np.asarray(cols, dtype=np.int64)
            self._r.append(rows + first)
            self._c.append(np.broadcast_to(cols, rows.shape))
            self._v.append(np.broadcast_to(np.asarray(coef, dtype=float), rows.shape))
        self._row_lower.append(np.broadcast_to(np.asarray(lower, dtype=float), (n,)))
        self._row_upper.append(np.broadcast_to(np.asarray(upper, dtype=float), (n,)))
        self.num_rows += n
        return np.arange(first, first + n)

    def add_cost(self, name: str, cols: np.ndarray, coef: float | np.ndarray) -> None:
        cols = np.asarray(cols, dtype=np.int64)
        self._costs.setdefault(name, []).append((cols, np.broadcast_to(np.asarray(coef, dtype=float), cols.shape)))

    def cost(self, name: str) -> np.ndarray:
        """Dense cost vector of one named term (zeros when nothing was added under it)."""
        vec = np.zeros(self.num_cols)
        for cols, coef in self._costs.get(name, []):
            np.add.at(vec, cols, coef)
        vec[np.abs(vec) < TINY] = 0.0
        return vec

    def matrix(self) -> Matrix:
        empty_i = np.empty(0, dtype=np.int64)
        rows = np.concatenate(self._r) if self._r else empty_i
        cols = np.concatenate(self._c) if self._c else empty_i
        vals = np.concatenate(self._v) if self._v else np.empty(0)
        keep = np.abs(vals) >= TINY
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        order = np.lexsort((rows, cols))
        counts = np.bincount(cols, minlength=self.num_cols)
        starts = np.zeros(self.num_cols + 1, dtype=np.int32)
        np.cumsum(counts, out=starts[1:])
        cat = np.concatenate
        return Matrix(
            col_lower=cat(self._col_lower) if self._col_lower else np.empty(0),
            col_upper=cat(self._col_upper) if self._col_upper else np.empty(0),
            integrality=cat(self._integer) if self._integer else np.empty(0, dtype=np.int32),
            row_lower=cat(self._row_lower) if self._row_lower else np.empty(0),
            row_upper=cat(self._row_upper) if self._row_upper else np.empty(0),
            starts=starts,
            indices=rows[order].astype(np.int32),
            values=vals[order],
        )
