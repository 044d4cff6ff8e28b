"""Exact top-K for a few users over a large catalogue: int8 screening, float32 rescoring.

One user against 10M items x d=64 float32 reads the 2.56 GB item table once, and that
read (memory bandwidth), not arithmetic, is the latency. This index keeps the table a
second time as per-row symmetric int8 codes ``c_i`` and one bfloat16 scale ``S_i`` per
row (``S_i`` >= max|w_i| / 127, so ``|w_ij - S_i c_ij| <= S_i / 2``): a quarter of the
float32 table's bytes (codes + scales ~ 0.65 GB at 10M x 64). A request reads the codes
instead of the table, then rescores a few hundred items exactly, so the result is the
exact float32 top-K, ties to the lower id included.

Search, for each user vector ``q`` (the model's ``user_representation``):

1. **Screen**: approximate scores ``a_i`` of every item with ``torch._weight_int8pack_mm``
   (bf16 query, int8 codes, fp32 accumulation, bf16 output); excluded items get ``-inf``.
2. **Bound**: ``|t_i - a_i| <= b_i`` for the score ``t_i`` the exact path computes
   (derivation below).
3. **Floor** ``L``: the items are grouped in chunks of ``width`` ids; each chunk with an
   unexcluded item holds one whose exact score is at least ``max(a) - b`` of the chunk,
   so the k-th largest of these per-chunk lower bounds is at most the k-th best exact
   score (k distinct chunks give k distinct items).
4. **Candidates**: items with ``a_i + b_i >= L`` (only in chunks whose upper bound
   reaches ``L``). Every true top-K item ``j`` has ``a_j + b_j >= t_j >= L``, and so has
   every item tied with the k-th: the exact top-K, ties included, lies in the set.
5. **Rescore** the candidates with the model's own float32 product and take the top-K
   with the evaluator's tie rule (:func:`~train.evaluation.chunked_ranking.merge_top_k`).

If the candidates exceed :data:`MAX_CANDIDATE_FRACTION` of the catalogue per user (a
loose bound, or fewer than ``k`` items left), :meth:`QuantizedIndex.search` returns None and the
caller ranks exactly with the chunked path; both outcomes are counted.

**The bound.** Fold an output bias into the vectors (``q' = [q, 1]``, ``w'_i = [w_i,
bias_i]``, zero-padded to ``K`` columns, a multiple of 16 as the kernel reads 16 at a
time), so the target is ``X_i = q'.w'_i``. Let ``qh = bf16(q')`` (round to nearest) and
``dq = q' - qh`` (exact in fp32), ``m_i = max_j |w'_ij|``, ``e_i = max_j |w'_ij - S_i
c_ij|``, ``u = 2^-24`` and ``g = (K + 2) u / (1 - (K + 2) u)``. Then

- the exact path's float32 score: ``|t_i - X_i| <= g ||q'||_1 m_i`` (a dot product of at
  most ``K`` terms and one bias addition, any summation order);
- ``X_i = qh.(S_i c_i) + qh.(w'_i - S_i c_i) + dq.w'_i``, the last two at most
  ``||qh||_1 e_i`` and ``||dq||_1 m_i``;
- the kernel forms ``fl(c_ij S_i)`` (exact operands, one rounding) and sums ``qh_j`` times
  it in fp32 (fused multiply-adds, then a lane reduction): within
  ``g ||qh||_1 127 S_i`` of ``S_i qh.c_i``, as ``|c_ij| <= 127``;
- rounding that sum to bf16 moves it by at most ``2^-8 |a_i|`` (round to nearest),
  plus a bf16 subnormal spacing near zero.

With the measured ratios ``rho = max_i e_i / S_i`` (~1/2) and ``mu = max_i m_i / S_i``
(~127), taken over the table at build time:

    b_i = 2 * (C(q) S_i + 2^-8 |a_i|) + 2^-100,
    C(q) = ||qh||_1 (rho + 127 g) + ||dq||_1 mu + g ||q'||_1 mu,

where the factor 2 covers the float32 evaluation of the norms and of the bound itself.

**Exact rescoring.** A float32 product may round differently in its last bit with the
shape of the call, and the chunked path's blocks are multiples of 64 items except the
catalogue's last ragged tail. Candidates are therefore rescored in blocks padded to a
multiple of 64 rows, and candidates within the tail from the same tail-shaped block at
the catalogue's end, which reproduces the chunked path's numbers bit for bit on the
platforms tested (``tests/test_quantized_index.py`` checks it against ``recommend``
without the index on float tables, and against brute force on integer-valued tables
where every summation order is exact).
"""
from __future__ import annotations

import functools
import threading
import weakref

import torch
from torch import Tensor

from recmodels.base import Context, Recommender
from train.evaluation.chunked_ranking import ALIGN, NO_ITEM, chunk_edges, chunk_width, mask_known, merge_top_k

MODES = ("auto", "exact", "quantized")
AUTO_MIN_ITEMS = 1_000_000  # auto uses the index from this catalogue size up
MAX_BATCH = 8  # rows per screen: larger batches are compute-bound and ranked exactly
MAX_CANDIDATE_FRACTION = 0.05  # more candidates than this: rank exactly instead
KERNEL_COLUMNS = 16  # the int8 kernel reads 16 columns per step (AVX-512)
SLICE_ROWS = 1 << 18  # rows quantised at once while building
UNIT = 2.0**-24  # float32 unit roundoff
BF16_UNIT = 2.0**-8  # bfloat16 unit roundoff
SAFETY = 2.0
TINY = 2.0**-100  # covers bf16 subnormal spacing (2^-133) near zero
Pairs = tuple[Tensor, Tensor]


@functools.cache
def kernel_available() -> bool:
    """Whether ``torch._weight_int8pack_mm`` (a private op) exists and runs here."""
    kernel = getattr(torch, "_weight_int8pack_mm", None)
    if kernel is None:
        return False
    try:
        codes = torch.ones(4, KERNEL_COLUMNS, dtype=torch.int8)
        out = kernel(torch.ones(1, KERNEL_COLUMNS, dtype=torch.bfloat16), codes, torch.ones(4, dtype=torch.bfloat16))
    except (RuntimeError, NotImplementedError):
        return False
    return bool((out.float() == KERNEL_COLUMNS).all())


def screen_width(num_items: int) -> int:
    """Items per screening chunk: a power of two from 16 to 1024, ~4096 chunks or more."""
    width = 16
    while width < 1024 and num_items // (2 * width) >= 4096:
        width *= 2
    return width


class QuantizedIndex:
    """int8 codes of one item table (and bias) for exact few-user top-K (module docstring).

    Built once per table; ``searches`` and ``fallbacks`` count the requests answered and
    those handed back to the exact path, ``candidates`` the (row, item) pairs screened in.
    The float32 ``table`` is kept by reference for rescoring (a view of the model's
    weight for SASRec/BERT4Rec; HSTU's normalised table is computed once and held).
    """

    def __init__(
        self,
        table: Tensor,
        bias: Tensor | None = None,
        width: int | None = None,
        max_candidates: float = MAX_CANDIDATE_FRACTION,
    ) -> None:
        _check_table(table, bias)
        self.table, self.bias, self.max_candidates = table, bias, float(max_candidates)
        self.num_items, self.dim = table.shape
        self.columns = -(-(self.dim + (bias is not None)) // KERNEL_COLUMNS) * KERNEL_COLUMNS
        self.width = int(width or screen_width(self.num_items))
        self.chunks = -(-self.num_items // self.width)
        padded = self.chunks * self.width
        self.codes = torch.zeros(padded, self.columns, dtype=torch.int8)
        self.scales = torch.full((padded,), 2.0**-126, dtype=torch.bfloat16)
        self.code_ratio, self.weight_ratio = 0.0, 0.0
        for lo in range(0, self.num_items, SLICE_ROWS):
            self._quantise(lo, min(lo + SLICE_ROWS, self.num_items))
        self.chunk_scales = self.scales.float().view(self.chunks, self.width).amax(1)
        self.largest_scale = float(self.chunk_scales.max())
        self.searches, self.fallbacks, self.candidates = 0, 0, 0

    @property
    def nbytes(self) -> int:
        """Bytes of codes and scales (a quarter of the float32 table, plus the padding)."""
        return self.codes.numel() + 2 * self.scales.numel() + 4 * self.chunk_scales.numel()

    def _quantise(self, lo: int, hi: int) -> None:
        rows = self._folded(lo, hi)
        largest = rows.abs().amax(1)
        scales = _bf16_at_least(largest / 127)
        codes = (rows / scales.unsqueeze(1)).round_().clamp_(-127, 127)
        # Exact in float32: S c has at most 15 significant bits and |w - S c| <= S / 2.
        error = (rows - scales.unsqueeze(1) * codes).abs().amax(1)
        self.code_ratio = max(self.code_ratio, float((error / scales).max()) * (1 + 2**-20))
        self.weight_ratio = max(self.weight_ratio, float((largest / scales).max()) * (1 + 2**-20))
        self.codes[lo:hi] = codes.to(torch.int8)
        self.scales[lo:hi] = scales.bfloat16()

    def _folded(self, lo: int, hi: int) -> Tensor:
        """Rows ``lo..hi-1`` as ``[w_i, bias_i, 0...]`` with ``columns`` columns."""
        rows = torch.zeros(hi - lo, self.columns)
        rows[:, : self.dim] = self.table[lo:hi]
        if self.bias is not None:
            rows[:, self.dim] = self.bias if self.bias.numel() == 1 else self.bias[lo:hi]
        return rows

    def search(
        self, users: Tensor, k: int, exclude: Pairs | None = None, chunk_items: int | None = None
    ) -> tuple[Tensor, Tensor] | None:
        """Exact top-``k`` (items, scores) [B, min(k, num_items)] for user vectors [B, d],
        ``exclude`` (batch row, item) pairs removed; None when the candidates are too many
        or the scores are not finite (the caller then ranks exactly). ``chunk_items`` is
        the chunked path's setting, whose block shapes the rescoring reproduces."""
        self.searches += 1
        found = self._search(users.float(), min(int(k), self.num_items), exclude, chunk_items)
        self.fallbacks += found is None
        return found

    def _search(self, users: Tensor, k: int, exclude: Pairs | None, chunk_items: int | None):
        query = torch.zeros(len(users), self.columns)
        query[:, : self.dim] = users
        if self.bias is not None:
            query[:, self.dim] = 1.0
        rounded = query.bfloat16()
        coefficient = self._coefficient(query, rounded)
        if not bool(torch.isfinite(coefficient).all()):
            return None  # NaN/inf in the user vectors, or scores near float32's range
        approx = torch._weight_int8pack_mm(rounded, self.codes, self.scales)
        approx[:, self.num_items :] = float("-inf")
        if exclude is not None and len(exclude[0]):
            mask_known(approx, exclude[0].long(), exclude[1].long())
        chunk_max = self._chunk_maxima(approx)
        if bool((torch.isnan(chunk_max) | (chunk_max == float("inf"))).any()):
            return None  # the exact path reports the NaN
        chunk_bound = _bound(chunk_max, self.chunk_scales, coefficient.unsqueeze(1))
        floor = self._floor(chunk_max - chunk_bound, k)
        hits = ((chunk_max + chunk_bound >= floor.unsqueeze(1)) & (chunk_max > float("-inf"))).nonzero()
        limit = self.max_candidates * self.num_items * len(users)
        if len(hits) * self.width > 4 * limit:  # the bound is too loose to pay off
            return None
        rows, items = self._candidates(approx, hits, coefficient, floor)
        self.candidates += len(items)
        if len(items) > limit:
            return None
        return self._rescore(users, rows, items, k, chunk_items)

    def _chunk_maxima(self, approx: Tensor) -> Tensor:
        """Largest screened score of each chunk [B, chunks], as float32.

        Read as int16 bit patterns (6x faster than a bf16 reduction on CPU): bf16 bits
        order like signed integers for values >= +0, and in reverse for negative ones,
        so a chunk's maximum is its largest pattern when that is >= 0 and its smallest
        pattern (the negative value nearest zero) when every value is negative."""
        bits = approx.view(torch.int16).view(len(approx), self.chunks, self.width)
        high, low = bits.amax(2), bits.amin(2)
        return torch.where(high >= 0, high, low).view(torch.bfloat16).float()

    def _coefficient(self, query: Tensor, rounded: Tensor) -> Tensor:
        """C(q) per row (module docstring)."""
        terms = self.columns + 2
        growth = terms * UNIT / (1 - terms * UNIT)
        norm, rounded_norm = query.abs().sum(1), rounded.float().abs().sum(1)
        residual_norm = (query - rounded.float()).abs().sum(1)
        coefficient = (
            rounded_norm * (self.code_ratio + 127 * growth)
            + residual_norm * self.weight_ratio
            + growth * norm * self.weight_ratio
        )
        # Scores this large could overflow float32 in one path and not the other.
        overflow = norm * self.weight_ratio * self.largest_scale > 2.0**120
        return coefficient.masked_fill(overflow, float("inf"))

    def _floor(self, lower: Tensor, k: int) -> Tensor:
        """k-th largest per-chunk lower bound per row; -inf when fewer than k chunks hold
        an item (then every remaining item is a candidate)."""
        if k > self.chunks:
            return torch.full((len(lower),), float("-inf"))
        return lower.topk(k, dim=1).values[:, -1]

    def _candidates(self, approx: Tensor, hits: Tensor, coefficient: Tensor, floor: Tensor) -> Pairs:
        """(batch row, item) pairs with ``a_i + b_i >= L`` in the chunks ``hits`` names."""
        rows, chunks = hits[:, 0], hits[:, 1]
        scores = approx.view(len(approx), self.chunks, self.width)[rows, chunks].float()
        scales = self.scales.view(self.chunks, self.width)[chunks].float()
        upper = scores + _bound(scores, scales, coefficient[rows].unsqueeze(1))
        keep = (upper >= floor[rows].unsqueeze(1)) & (scores > float("-inf"))
        at, column = keep.nonzero().unbind(1)
        return rows[at], chunks[at] * self.width + column

    def _rescore(self, users: Tensor, rows: Tensor, items: Tensor, k: int, chunk_items: int | None):
        """Exact top-``k`` among each row's candidates, scored as the chunked path does."""
        union, position = torch.unique(items, return_inverse=True)
        exact = self._exact_scores(users, union, chunk_items)
        values = torch.full_like(exact, float("-inf"))
        values[rows, position] = exact[rows, position]
        ids = union.unsqueeze(0).expand(len(users), -1)
        missing = k - len(union)
        if missing > 0:  # fewer candidates than k: the trailing slots stay empty
            values = torch.cat([values, torch.full((len(users), missing), float("-inf"))], 1)
            ids = torch.cat([ids, torch.full((len(users), missing), NO_ITEM, dtype=torch.long)], 1)
        values, ids = merge_top_k(values, ids, k)
        return ids, values

    def _exact_scores(self, users: Tensor, items: Tensor, chunk_items: int | None) -> Tensor:
        """Float32 scores [B, len(items)] of sorted ``items``: the bulk from gathered rows
        padded to a multiple of :data:`ALIGN`, the catalogue's ragged tail from a block of
        the chunked path's tail shape."""
        tail = self._tail_block(len(users), chunk_items)
        split = int(torch.searchsorted(items, self.num_items - tail)) if tail else len(items)
        parts = []
        if split:
            bulk = items[:split]
            padded = torch.cat([bulk, bulk.new_zeros(-split % ALIGN)])  # whole 64-row tiles
            parts.append(self._product(users, self.table[padded], self._bias_of(padded))[:, :split])
        if split < len(items):
            start = self.num_items - tail
            block = self._product(users, self.table[start:], self._bias_of(slice(start, None)))
            parts.append(block[:, items[split:] - start])
        return torch.cat(parts, 1)

    def _tail_block(self, batch: int, chunk_items: int | None) -> int:
        """Items at the catalogue's end that the chunked path scores outside whole 64-item
        tiles, widened to a block of the same width modulo 64 (0 when there are none)."""
        edges = chunk_edges(0, self.num_items, chunk_width(self.num_items, batch, chunk_items))
        last = edges[-1] - edges[-2]
        ragged = last % ALIGN
        return min(last, ALIGN + ragged) if ragged else 0

    def _bias_of(self, items: Tensor | slice) -> Tensor | None:
        if self.bias is None or self.bias.numel() == 1:
            return self.bias
        return self.bias[items]

    @staticmethod
    def _product(users: Tensor, rows: Tensor, bias: Tensor | None) -> Tensor:
        """The dot-product models' scoring (``DotProductScores.range``): product, then bias."""
        scores = users @ rows.T
        return (scores + bias if bias is not None else scores).float()


def _bound(approx: Tensor, scales: Tensor, coefficient: Tensor) -> Tensor:
    """``b = 2 (C S + 2^-8 |a|) + tiny``, with ``|a|`` taken as 0 where ``a = -inf``."""
    magnitude = approx.abs().masked_fill_(approx == float("-inf"), 0.0)
    return SAFETY * (coefficient * scales + BF16_UNIT * magnitude) + TINY


def _bf16_at_least(values: Tensor) -> Tensor:
    """The smallest bfloat16 >= each (positive) value, as float32; zero rows get the
    smallest normal bf16 so their codes are 0 and their bound tiny."""
    values = values.clamp(min=2.0**-126)
    rounded = values.bfloat16()
    below = rounded.float() < values
    bumped = (rounded.view(torch.int16) + 1).view(torch.bfloat16)  # next bf16 up (positive)
    return torch.where(below, bumped, rounded).float()


def _check_table(table: Tensor, bias: Tensor | None) -> None:
    if table.dim() != 2 or table.dtype != torch.float32 or table.device.type != "cpu":
        raise ValueError(
            f"the quantised index takes a float32 CPU item table [items, d], got {table.dtype} "
            f"{tuple(table.shape)} on {table.device}; use index=exact for this model"
        )
    if bias is not None and (bias.dtype != torch.float32 or bias.numel() not in (1, len(table))):
        raise ValueError(
            f"output bias must be float32 with one value or one per item, got {bias.dtype} "
            f"{tuple(bias.shape)}; use index=exact for this model"
        )
    finite = all(bool(torch.isfinite(table[lo : lo + SLICE_ROWS]).all()) for lo in range(0, len(table), SLICE_ROWS))
    if not finite or (bias is not None and not bool(torch.isfinite(bias).all())):
        raise ValueError("the item table or output bias holds inf/NaN: check the model weights")


# --- Which requests use an index, and one index per loaded model -------------------

_INDEXES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"index={mode!r}: use one of {MODES} (auto: the quantised index for few users over "
                         f">= {AUTO_MIN_ITEMS:,} items; exact: always the chunked path)")
    return mode


def is_dot_product(model: Recommender) -> bool:
    """Whether scores are ``user_representation @ item_table().T (+ output_bias)``: the
    generic :meth:`Recommender.item_scores` over an ``item_table``, on CPU in float32."""
    if type(model).item_scores is not Recommender.item_scores or not callable(getattr(model, "item_table", None)):
        return False
    bias = getattr(model, "output_bias", None)
    return bias is None or isinstance(bias, Tensor)


def index_for(model: Recommender) -> QuantizedIndex | None:
    """The model's index, built on first use and again if its weights change; None when
    the model is not a float32 CPU dot-product model or the int8 kernel is missing."""
    with _LOCK:
        stamp = _weights_stamp(model)
        cached = _INDEXES.get(model)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        index = _build(model)
        _INDEXES[model] = (stamp, index)
        return index


def _build(model: Recommender) -> QuantizedIndex | None:
    if not kernel_available() or not is_dot_product(model):
        return None
    with torch.inference_mode():
        table, bias = model.item_table(), getattr(model, "output_bias", None)
        if table.dtype != torch.float32 or table.device.type != "cpu" or len(table) != model.num_items:
            return None
        if bias is not None and (bias.dtype != torch.float32 or bias.numel() not in (1, len(table))):
            return None
        return QuantizedIndex(table.detach(), None if bias is None else bias.detach())


def _weights_stamp(model: Recommender) -> tuple:
    """Changes when a parameter is replaced or written in place (load_state_dict)."""
    return (model.num_items,) + tuple((p.data_ptr(), p._version) for p in model.parameters())


def prepare_index(model: Recommender, mode: str) -> QuantizedIndex | None:
    """Build the index now if ``mode`` will use it for this model (a service calls this
    at start, so the first request does not pay the build: ~10 s at 10M x 64)."""
    if check_mode(mode) == "exact" or (mode == "auto" and model.num_items < AUTO_MIN_ITEMS):
        return None
    return index_for(model)


def screened_top_k(
    model: Recommender,
    context: Context,
    k: int,
    exclude: Pairs | None,
    batch: int,
    mode: str = "auto",
    chunk_items: int | None = None,
) -> tuple[Tensor, Tensor] | None:
    """(items, scores) from the model's index when ``mode`` and the request call for it
    and the search succeeds; None means: rank with the exact chunked path."""
    if check_mode(mode) == "exact" or batch > MAX_BATCH or k < 1:
        return None
    if mode == "auto" and model.num_items < AUTO_MIN_ITEMS:
        return None
    index = index_for(model)
    if index is None:
        return None
    users = model.user_representation(context)
    if users.dtype != torch.float32 or users.device.type != "cpu":
        return None
    return index.search(users, k, exclude, chunk_items)
