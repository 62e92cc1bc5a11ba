// Per-element math shared by the CPU and CUDA kernels (HANET_HD: host-and-device
// inline functions, detectron2's HOST_DEVICE_INLINE; common/host_device.h).
//
// Every index rule here is PyTorch's own, so that the fused kernels agree with
// adaptive pooling and F.interpolate(mode="linear", align_corners=False).  The CPU
// kernels call exactly these functions, so CPU tests exercise the CUDA index math.
// A divisor argument (`Div`) is an int64_t (the CPU kernels: plain `/`) or a
// FastDivmod built on the host (the CUDA kernels: no 64-bit division instruction,
// see fast_divmod.h); both give the exact quotient, so the results are the same.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/fast_divmod.h"
#include "common/host_device.h"

namespace hanet {
namespace math {

// ---- exact a * b / c ---------------------------------------------------------
// floor(a * b / c) and ceil(a * b / c) for a, b >= 0 and c > 0, exact whenever the
// quotient fits int64 even where the product does not (3e9 input rows pooled to 4e9
// bins: i * in reaches 1.2e19 > 2^63).  Factors a, b below 2^31 (a product below 2^62)
// take one 64-bit division (quot: `/` for an int64_t c, multiply-high and shift for a
// FastDivmod c).
HANET_HD bool fits_31_bits(int64_t a, int64_t b) {
  return ((a | b) >> 31) == 0;
}
// p / c and p % c for p = hi * 2^64 + lo and 1 <= c < 2^63 with hi < c (so the
// quotient fits 64 bits), by 64 steps of shift-and-subtract: the remainder stays below
// c, so 2 * r + 1 fits 64 bits.  A plain 128-bit `/` is a library call in device code,
// and a call gives every kernel that can reach it a stack frame and register spills
// (tests/test_cuda_build.py checks the cubins for none); this loop stays inline.  Only
// factors a or b of 2^31 and more take it.
HANET_HD uint64_t div_wide(uint64_t hi, uint64_t lo, uint64_t c, uint64_t* rem) {
  uint64_t r = hi, q = 0;
#if defined(__CUDA_ARCH__)
#pragma unroll 1
#endif
  for (int i = 63; i >= 0; --i) {
    r = (r << 1) | ((lo >> i) & 1);
    q <<= 1;
    if (r >= c) {
      r -= c;
      q |= 1;
    }
  }
  *rem = r;
  return q;
}
// a * b / c (and the remainder) for factors of 2^31 and more: the product in 128 bits
// (umulhi64 from fast_divmod.h and the low 64 bits), then div_wide.
HANET_HD uint64_t mul_div_wide(int64_t a, int64_t b, int64_t c, uint64_t* rem) {
  const uint64_t ua = static_cast<uint64_t>(a), ub = static_cast<uint64_t>(b);
  return div_wide(umulhi64(ua, ub), ua * ub, static_cast<uint64_t>(c), rem);
}
template <typename Div>
HANET_HD int64_t mul_div_floor(int64_t a, int64_t b, const Div& c) {
  if (fits_31_bits(a, b)) return quot(a * b, c);
  uint64_t r = 0;
  return static_cast<int64_t>(mul_div_wide(a, b, value_of(c), &r));
}
template <typename Div>
HANET_HD int64_t mul_div_ceil(int64_t a, int64_t b, const Div& c) {
  if (fits_31_bits(a, b)) {
    const int64_t p = a * b;
    const int64_t q = quot(p, c);
    return q + (q * value_of(c) != p);
  }
  uint64_t r = 0;
  const uint64_t q = mul_div_wide(a, b, value_of(c), &r);
  return static_cast<int64_t>(q) + (r != 0);
}

// ---- adaptive pooling bins ------------------------------------------------
// Bin i of `out` bins over `in` rows covers [bin_start, bin_end):
// [floor(i*in/out), ceil((i+1)*in/out)).  Bins overlap, and repeat rows when in < out.
template <typename Div>
HANET_HD int64_t bin_start(int64_t i, const Div& out, int64_t in) {
  return mul_div_floor(i, in, out);
}
template <typename Div>
HANET_HD int64_t bin_end(int64_t i, const Div& out, int64_t in) {
  return mul_div_ceil(i + 1, in, out);
}
// The bins that contain input row h are exactly [bin_start(h, in, out), bin_end(h, in, out)):
// the same rule with `in` and `out` swapped (used by the gather-style backward passes).
template <typename Div>
HANET_HD int64_t first_bin_of_row(int64_t h, int64_t out, const Div& in) {
  return bin_start(h, in, out);
}
template <typename Div>
HANET_HD int64_t last_bin_of_row(int64_t h, int64_t out, const Div& in) {
  return bin_end(h, in, out);  // exclusive
}

// Gradient of mean pooling at input row y: the bins holding y, each spread over its
// (rows x W) area, added in bin order (CPU and CUDA give the same sum).  rows and H
// are both divisors (int64_t or FastDivmod).
template <typename acc_t, typename grad_t, typename RowsDiv, typename HDiv>
HANET_HD acc_t mean_grad_at_row(const grad_t* g, int64_t y, const RowsDiv& rows, const HDiv& H,
                                int64_t W) {
  acc_t v = 0;
  const int64_t i1 = last_bin_of_row(y, value_of(rows), H);
  for (int64_t i = first_bin_of_row(y, value_of(rows), H); i < i1; ++i) {
    const int64_t count = bin_end(i, rows, value_of(H)) - bin_start(i, rows, value_of(H));
    v += static_cast<acc_t>(g[i]) / static_cast<acc_t>(count * W);
  }
  return v;
}

// ---- linear interpolation, align_corners=False ----------------------------
// Output index `dst` of `out_size` reads input rows i0 and i1 with weights w0, w1.
template <typename acc_t>
struct LinearTap {
  int64_t i0;
  int64_t i1;
  acc_t w0;
  acc_t w1;
};

template <typename acc_t>
HANET_HD LinearTap<acc_t> linear_tap(int64_t dst, int64_t in_size, int64_t out_size) {
  LinearTap<acc_t> t;
  if (in_size == out_size) {
    // PyTorch copies (i0 = i1 = dst, weights 1 and 0): a neighbour's NaN/inf must not
    // leak in through a zero weight.
    t.i0 = dst;
    t.i1 = dst;
    t.w0 = static_cast<acc_t>(1);
    t.w1 = static_cast<acc_t>(0);
    return t;
  }
  // PyTorch: scale = in/out; src = max(scale*(dst+0.5)-0.5, 0); i0 = (int)src.
  // (PyTorch's CPU kernels take floorf(src) instead, src rounded to float: in float64
  // that moves i0 by up to ulp_float(src), a row at 2^25 rows; not copied here.  At
  // coordinates that land on a row, which tap gets weight exactly 0 also depends on
  // whether the compiler fuses the expression into an fma; see tests/test_fuzz_ops.py.)
  const acc_t scale = static_cast<acc_t>(in_size) / static_cast<acc_t>(out_size);
  acc_t src = scale * (static_cast<acc_t>(dst) + static_cast<acc_t>(0.5)) - static_cast<acc_t>(0.5);
  if (src < static_cast<acc_t>(0)) src = static_cast<acc_t>(0);
  int64_t i0 = static_cast<int64_t>(src);
  if (i0 > in_size - 1) i0 = in_size - 1;
  acc_t lambda = src - static_cast<acc_t>(i0);
  if (lambda > static_cast<acc_t>(1)) lambda = static_cast<acc_t>(1);
  t.i0 = i0;
  t.i1 = (i0 < in_size - 1) ? i0 + 1 : i0;
  t.w1 = lambda;
  t.w0 = static_cast<acc_t>(1) - lambda;
  return t;
}

// Adjoint of linear interpolation for one row: grad_in[0..in_size) receives the
// weighted sum of grad[0..out_size).  Serial, so it is deterministic.
template <typename acc_t, typename grad_t>
HANET_HD void linear_backward_row(const grad_t* grad, int64_t out_size, acc_t* grad_in,
                                  int64_t in_size) {
  for (int64_t j = 0; j < in_size; ++j) grad_in[j] = static_cast<acc_t>(0);
  for (int64_t i = 0; i < out_size; ++i) {
    const LinearTap<acc_t> t = linear_tap<acc_t>(i, in_size, out_size);
    const acc_t g = static_cast<acc_t>(grad[i]);
    grad_in[t.i0] += t.w0 * g;
    grad_in[t.i1] += t.w1 * g;
  }
}

// ---- attention_rescale backward from the forward's output -------------------
// The backward keeps out = feat * a rather than feat, so feat can be freed after the
// forward (issue 13: memory).  a = interp(sigmoid(.)) > 0 and constant along a row, so
// sum_w grad * feat = (sum_w grad * out) / a.  A row whose attention underflowed to 0
// (logits below about -87) has out = 0, so the dot is 0 (its logits gradient,
// s * (1 - s) * ..., is 0 in the reference too) or, with a non-finite grad or feat,
// NaN as in the reference: it is kept as is.  A NaN logit makes its rows' a and out NaN,
// and so the gradients of the logits they interpolate from (the reference keeps those
// of the finite neighbours finite).
template <typename acc_t>
HANET_HD acc_t feat_dot_from_result(acc_t result_dot, acc_t a) {
  return a > static_cast<acc_t>(0) ? result_dot / a : result_dot;
}

// ---- sigmoid ---------------------------------------------------------------
HANET_HD float sigmoid(float x) { return 1.0f / (1.0f + ::expf(-x)); }
HANET_HD double sigmoid(double x) { return 1.0 / (1.0 + ::exp(-x)); }

// Attention at output row `dst`: linear interpolation of sigmoid(logits[0..in_size)).
template <typename acc_t, typename load_t>
HANET_HD acc_t interp_sigmoid(const load_t* logits, int64_t dst, int64_t in_size,
                              int64_t out_size) {
  const LinearTap<acc_t> t = linear_tap<acc_t>(dst, in_size, out_size);
  const acc_t s0 = sigmoid(static_cast<acc_t>(logits[t.i0]));
  const acc_t s1 = sigmoid(static_cast<acc_t>(logits[t.i1]));
  return t.w0 * s0 + t.w1 * s1;
}

// Max-pool comparison: PyTorch takes a new maximum when strictly greater, or NaN.
template <typename acc_t>
HANET_HD bool takes_max(acc_t val, acc_t cur) {
  return (val > cur) || (val != val);
}

// Merges a partial arg-max state (other_val, other_idx) into (val, idx).  Each state is
// a `takes_max` scan, in flat-index order, of its own subset of one bin, started from
// (-inf, the bin's first index).  The merge equals one scan over the union (the last NaN
// if there is one, else the first maximum), whatever the subsets and the merge order, so
// parallel reductions (warp shuffles, shared-memory trees, split partials) can use it.
template <typename acc_t>
HANET_HD void merge_max(acc_t& val, int64_t& idx, acc_t other_val, int64_t other_idx) {
  // The state at the larger index is the one scanned second.  Equal indices only meet
  // when one state is still the untouched start, which any taken element replaces.
  const bool take = (other_idx >= idx) ? takes_max(other_val, val) : !takes_max(val, other_val);
  if (take) {
    val = other_val;
    idx = other_idx;
  }
}

// ---- adjoint of linear interpolation as a gather ----------------------------
// First output index in [0, out_size] whose tap has i0 >= src (out_size if none).
// linear_tap's i0 is non-decreasing in dst, so a binary search on linear_tap itself
// finds it, and the gather below agrees with the forward taps exactly.
template <typename acc_t>
HANET_HD int64_t first_dst_reading_at_least(int64_t src, int64_t in_size, int64_t out_size) {
  int64_t lo = 0, hi = out_size;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (linear_tap<acc_t>(mid, in_size, out_size).i0 >= src) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

// The outputs whose taps read input row `src` are exactly [*begin, *end): those with
// i0 == src - 1 (reading src through i1) or i0 == src.
template <typename acc_t>
HANET_HD void dst_range_reading(int64_t src, int64_t in_size, int64_t out_size, int64_t* begin,
                                int64_t* end) {
  if (in_size == out_size) {  // a copy: only output src reads row src
    *begin = src;
    *end = src + 1;
    return;
  }
  *begin = src > 0 ? first_dst_reading_at_least<acc_t>(src - 1, in_size, out_size) : 0;
  *end = first_dst_reading_at_least<acc_t>(src + 1, in_size, out_size);
}

// grad_in[src] of linear interpolation, gathered over the outputs that read src.  The
// terms are those linear_backward_row adds into grad_in[src], in the same (dst) order.
template <typename acc_t, typename grad_t>
HANET_HD acc_t linear_backward_at(const grad_t* grad, int64_t out_size, int64_t src,
                                  int64_t in_size) {
  int64_t begin = 0, end = 0;
  dst_range_reading<acc_t>(src, in_size, out_size, &begin, &end);
  acc_t acc = static_cast<acc_t>(0);
  for (int64_t dst = begin; dst < end; ++dst) {
    const LinearTap<acc_t> t = linear_tap<acc_t>(dst, in_size, out_size);
    const acc_t g = static_cast<acc_t>(grad[dst]);
    if (t.i0 == src) acc += t.w0 * g;
    if (t.i1 == src) acc += t.w1 * g;
  }
  return acc;
}

}  // namespace math
}  // namespace hanet
