"""A stable content hash of rows, for telling fact versions apart (`etl_row_hash`).

Why not polars' `Expr.hash`: it is not stable across polars versions, and this hash must never change.
The warehouse keeps one row per (natural key, etl_row_hash), so a hash that changed with an upgrade
would load every replayed version a second time. Why not hashlib: polars has no digest expression, and
a hashlib call per row costs about a microsecond of Python per row. So the digest is defined here and
computed with numpy over whole columns, a batch of rows at a time:

1. Each column becomes one 64-bit word per row, by dtype: integers, dates (days since 1970-01-01),
   times (ns since midnight), datetimes, durations and decimals (the scaled integer) by their physical
   integer value; booleans as 0/1; strings by a 64-bit fold of their UTF-8 bytes (zero-padded to whole
   little-endian words, byte length mixed in). A null counts as 0 ('' for strings), and one more
   word holds the row's null mask (bit i = column i is null), so null and 0 differ.
2. The words, in column order, are folded by two 64-bit lanes with different seeds using xxHash64's
   round, merge and avalanche functions; the result is the two lanes as 32 lowercase hex digits.

For a fixed column list and dtypes the encoding is injective, so equal hashes mean equal rows up to a
64-to-128-bit collision. tests/transform/test_hashing.py pins known values: a change to this module
that changes them is a breaking change of the warehouse contract.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_P5 = np.uint64(0x27D4EB2F165667C5)
_SEEDS = (np.uint64(0), np.uint64(0x746F7465735F7631))  # the second is b"totes_v1" read as an integer
# Byte -> its two lowercase hex digits as one little-endian uint16 (so a byte array views as text).
_HEX_PAIRS = np.array(
    [ord(hi) | (ord(lo) << 8) for hi in "0123456789abcdef" for lo in "0123456789abcdef"], dtype=np.uint16
)
# Rows per numpy batch: keeps each word column within the CPU cache (measured fastest around 64k).
BATCH_ROWS = 1 << 16
# Batches hashed at once, each on its own thread: numpy's and polars' loops release the GIL, so on two cores two
# batches take about the time of one (x100 payments, 1.58M rows: 1.06-1.2 s -> 0.58-0.67 s). A frame of one
# batch is hashed on the caller's thread.
THREADS = min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
# Bytes of zero-padded string words built at once (shared by the rows padded together; see _fold_strings).
PAD_BYTES = 1 << 23
_MAX_COLUMNS = 64  # the null mask is one 64-bit word


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _premix(word: np.ndarray) -> np.ndarray:
    """The input half of xxHash64's round; it does not depend on the lane, so it is shared by both."""
    return _rotl(word * _P2, 31) * _P1


def _merge(h: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The accumulator half of xxHash64's round."""
    return _rotl(h ^ k, 27) * _P1 + _P4


def _round(h: np.ndarray, word: np.ndarray) -> np.ndarray:
    return _merge(h, _premix(word))


def _avalanche(h: np.ndarray) -> np.ndarray:
    h = (h ^ (h >> np.uint64(33))) * _P2
    h = (h ^ (h >> np.uint64(29))) * _P3
    return h ^ (h >> np.uint64(32))


def _string_bytes(filled: pl.Series, n_bytes: np.ndarray) -> np.ndarray:
    """Per string (no nulls) of `n_bytes` UTF-8 bytes: its bytes zero-padded to words (a words x rows matrix)."""
    width = (int(n_bytes.max(initial=0)) // 8 + 1) * 8
    padded = pl.select(
        pl.concat_str([pl.lit(filled), pl.lit("\0" * width).str.slice(0, width - pl.lit(n_bytes))])
        .cast(pl.Binary)
        .bin.reinterpret(dtype=pl.Array(pl.UInt64, width // 8), endianness="little")
    ).to_series()
    return np.ascontiguousarray(padded.to_numpy().T)


def _fold_strings(strings: pl.Series) -> list[np.ndarray]:
    """Per seed, the fold of each string (nulls as '') of `strings`.

    Strings are padded to the widest of the rows padded together, so one wide value padded with a whole batch
    would cost its width times the batch's rows (a 64 KB text: 4 GB). Rows are padded together only while
    rows x width stays within PAD_BYTES: sorted by length, in chunks, so memory does not grow with one wide
    value beyond about its own size, and the usual narrow batch is still one chunk."""
    filled = strings.fill_null("")
    n_bytes = filled.str.len_bytes().cast(pl.UInt64).to_numpy()
    folded = [np.empty(len(n_bytes), dtype=np.uint64) for _ in _SEEDS]
    widths = (n_bytes // np.uint64(8) + np.uint64(1)) * np.uint64(8)
    if int(widths.max(initial=0)) * len(widths) <= PAD_BYTES:
        chunks = [np.arange(len(widths))]
    else:
        order = np.argsort(n_bytes, kind="stable")
        sorted_widths = widths[order]
        chunks, start = [], 0
        while start < len(order):
            # The chunk's width is its last (widest) row's: take rows while rows x width fits.
            fits = np.arange(1, len(order) - start + 1, dtype=np.uint64) * sorted_widths[start:] <= PAD_BYTES
            stop = start + max(1, len(fits) if fits.all() else int(np.argmin(fits)))
            chunks.append(order[start:stop])
            start = stop
    for rows in chunks:
        words = _string_bytes(filled.gather(rows), n_bytes[rows])
        for lane, seed in zip(folded, _SEEDS, strict=True):
            lane[rows] = _fold_string(words, n_bytes[rows], seed)
    return folded


def _fold_string(words: np.ndarray, n_bytes: np.ndarray, seed: np.uint64) -> np.ndarray:
    """Per string, a 64-bit fold of its own words (not the padding beyond them) and its byte length."""
    n_words = (n_bytes + np.uint64(7)) // np.uint64(8)
    h = seed + _P5 + n_bytes
    # Only a row's own words are folded, so the result does not depend on the batch's widest string.
    for j in range(words.shape[0]):
        h = np.where(j < n_words, _round(h, words[j]), h)
    return _avalanche(h)


def _words(frame: pl.DataFrame) -> tuple[list[np.ndarray | None], np.ndarray]:
    """Per column its 64-bit words (None for a string column, folded per batch), and the null masks."""
    exprs = []
    for name, dtype in frame.schema.items():
        if dtype == pl.String:
            continue
        if not (dtype == pl.Boolean or dtype.is_integer() or dtype.is_temporal() or isinstance(dtype, pl.Decimal)):
            raise TypeError(f"row hash: no stable encoding for column {name!r} of dtype {dtype}")
        if isinstance(dtype, pl.Decimal) and (dtype.precision or 38) > 18:
            raise TypeError(f"row hash: decimal column {name!r} is wider than 64 bits ({dtype})")
        exprs.append(pl.col(name).to_physical().cast(pl.Int64).fill_null(0))
    numeric = frame.select(exprs)
    arrays = iter(numeric.get_column(c).to_numpy().view(np.uint64) for c in numeric.columns)
    words = [None if dtype == pl.String else next(arrays) for dtype in frame.schema.values()]
    null_mask = np.zeros(frame.height, dtype=np.uint64)
    for i, series in enumerate(frame.get_columns()):
        if series.null_count():  # known without a scan; most contract columns never hold nulls
            null_mask |= series.is_null().cast(pl.UInt64).to_numpy() << np.uint64(i)
    return words, null_mask


def _hash_batch(strings: list[pl.Series | None], words: list[np.ndarray | None], null_mask: np.ndarray) -> pl.Series:
    folded = {i: _fold_strings(series) for i, series in enumerate(strings) if series is not None}
    premixed = [None if word is None else _premix(word) for word in words]
    lanes = []
    for lane, seed in enumerate(_SEEDS):
        h = np.full(len(null_mask), seed + _P5 + np.uint64(len(words) + 1), dtype=np.uint64)
        for i, k in enumerate(premixed):
            h = _merge(h, _premix(folded[i][lane]) if k is None else k)
        lanes.append(_avalanche(_round(h, null_mask)))
    digest_bytes = np.stack(lanes, axis=1).astype(">u8").view(np.uint8)  # (rows, 16), big-endian lanes
    text = np.ascontiguousarray(_HEX_PAIRS[digest_bytes]).view("S32").ravel()
    return pl.Series(text).cast(pl.String)


def row_hash(frame: pl.DataFrame, columns: Sequence[str]) -> pl.Series:
    """Per row of `frame`, the 32-hex-digit stable hash of its values in `columns` (in that order)."""
    if len(columns) > _MAX_COLUMNS:
        raise ValueError(f"row hash: at most {_MAX_COLUMNS} columns, got {len(columns)}")
    selected = frame.select(columns)
    if selected.height == 0:
        return pl.Series("etl_row_hash", [], dtype=pl.String)

    def hash_batch(start: int) -> pl.Series:
        # The words of one batch at a time: whole-column word arrays would cost 8 bytes per row and column.
        batch = selected.slice(start, BATCH_ROWS)
        with np.errstate(over="ignore"):  # the mixing arithmetic is modulo 2**64 by design (set per thread)
            words, null_mask = _words(batch)
            strings = [batch.get_column(c) if w is None else None for c, w in zip(columns, words, strict=True)]
            return _hash_batch(strings, words, null_mask)

    starts = range(0, selected.height, BATCH_ROWS)
    if len(starts) == 1 or THREADS == 1:
        parts = [hash_batch(start) for start in starts]
    else:
        with ThreadPoolExecutor(THREADS, thread_name_prefix="totes-row-hash") as pool:
            parts = list(pool.map(hash_batch, starts))  # in batch order
    return pl.concat(parts).alias("etl_row_hash")


def with_row_hash(frame: pl.DataFrame, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """`frame` plus a String column `etl_row_hash`: the stable hash of each row over `columns` (default all)."""
    return frame.with_columns(row_hash(frame, frame.columns if columns is None else columns))
