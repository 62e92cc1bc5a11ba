// CPU kernels of hanet::width_pool (adaptive mean/max pooling to (rows, 1)) and
// its backward.
//
// Forward runs in two passes: per-row statistics over the width (sum, or max and
// arg-max column) into a small (B, C, H) buffer, read once from the big input in
// its own layout; then the adaptive row bins combine those rows.  The backward
// writes every input-gradient element exactly once (no zero-fill-then-scatter).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <limits>
#include <tuple>
#include <vector>

#include "common/hanet_math.h"
#include "contract.h"
#include "alloc.h"
#include "vec_io.h"

namespace hanet {
namespace cpu {
namespace {

template <typename T>
void row_sums(const at::Tensor& x, acc_t<T>* sums, Layout layout) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const T* X = x.const_data_ptr<T>();
  if (layout == Layout::NCHW) {
    at::parallel_for(0, B * C * H, grain_for(W), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) sums[r] = sum_row<T>(X + r * W, W);
    });
  } else {
    at::parallel_for(0, B * H, grain_for(W * C), [&](int64_t begin, int64_t end) {
      std::vector<acc_t<T>> acc(C);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H, y = r % H;
        std::fill(acc.begin(), acc.end(), acc_t<T>(0));
        for (int64_t xw = 0; xw < W; ++xw) accumulate_row<T>(X + (r * W + xw) * C, acc.data(), C);
        for (int64_t c = 0; c < C; ++c) sums[(b * C + c) * H + y] = acc[c];
      }
    });
  }
}

// Row maxima and their columns, scanning columns in order with PyTorch's rule.
template <typename T>
void row_maxima(const at::Tensor& x, acc_t<T>* maxima, int64_t* cols, Layout layout) {
  using acc = acc_t<T>;
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const T* X = x.const_data_ptr<T>();
  const acc lowest = -std::numeric_limits<acc>::infinity();
  // Column indices ride along as acc_t values in the vector code: exact below 2^24.
  TORCH_CHECK(W < (int64_t(1) << 24), "hanet.width_pool: max pooling supports widths below 2^24, got ", W);
  if (layout == Layout::NCHW) {
    at::parallel_for(0, B * C * H, grain_for(W), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) row_max<T>(X + r * W, W, maxima[r], cols[r]);
    });
  } else {
    at::parallel_for(0, B * H, grain_for(W * C), [&](int64_t begin, int64_t end) {
      std::vector<acc> best(C), argf(C);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H, y = r % H;
        std::fill(best.begin(), best.end(), lowest);
        std::fill(argf.begin(), argf.end(), acc(0));
        for (int64_t xw = 0; xw < W; ++xw)
          max_update_cols<T>(X + (r * W + xw) * C, best.data(), argf.data(), C, static_cast<acc>(xw));
        for (int64_t c = 0; c < C; ++c) {
          maxima[(b * C + c) * H + y] = best[c];
          cols[(b * C + c) * H + y] = static_cast<int64_t>(argf[c]);
        }
      }
    });
  }
}

template <typename T>
void pool_forward(const at::Tensor& x, int64_t rows, bool is_max, Layout layout, at::Tensor& out,
                  at::Tensor& indices) {
  using acc = acc_t<T>;
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const auto acc_opts = x.options().dtype(c10::CppTypeToScalarType<acc>::value);
  at::Tensor stats = at::empty({B, C, H}, acc_opts);
  acc* S = stats.mutable_data_ptr<acc>();
  T* O = out.mutable_data_ptr<T>();
  if (!is_max) {
    row_sums<T>(x, S, layout);
    at::parallel_for(0, B * C, grain_for(H, 4096), [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        for (int64_t i = 0; i < rows; ++i) {
          const int64_t y0 = math::bin_start(i, rows, H), y1 = math::bin_end(i, rows, H);
          acc s = 0;
          for (int64_t y = y0; y < y1; ++y) s += S[p * H + y];
          O[p * rows + i] = static_cast<T>(s / static_cast<acc>((y1 - y0) * W));
        }
      }
    });
    return;
  }
  at::Tensor col_t = at::empty({B, C, H}, x.options().dtype(at::kLong));
  int64_t* cols = col_t.mutable_data_ptr<int64_t>();
  int64_t* I = indices.mutable_data_ptr<int64_t>();
  row_maxima<T>(x, S, cols, layout);
  at::parallel_for(0, B * C, grain_for(H, 4096), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t y0 = math::bin_start(i, rows, H), y1 = math::bin_end(i, rows, H);
        acc best = -std::numeric_limits<acc>::infinity();
        int64_t arg = y0 * W;
        for (int64_t y = y0; y < y1; ++y) {
          if (math::takes_max(S[p * H + y], best)) {
            best = S[p * H + y];
            arg = y * W + cols[p * H + y];
          }
        }
        O[p * rows + i] = static_cast<T>(best);
        I[p * rows + i] = arg;
      }
    }
  });
}

// The mean-pool gradient of every input row, from tables built once per call: the
// bins holding row y ([i0[y], i1[y])) and each bin's divisor (its rows x W).  The same
// sum in the same order as math::mean_grad_at_row, without its integer divisions per
// element (which cost more than the row itself when W is small, e.g. the autograd's
// (B, C, H, 1) row gradient).
template <typename acc>
struct MeanRowGrad {
  std::vector<int64_t> i0, i1;
  std::vector<acc> denom;
  MeanRowGrad(int64_t rows, int64_t H, int64_t W) : i0(H), i1(H), denom(rows) {
    for (int64_t y = 0; y < H; ++y) {
      i0[y] = math::first_bin_of_row(y, rows, H);
      i1[y] = math::last_bin_of_row(y, rows, H);
    }
    for (int64_t i = 0; i < rows; ++i)
      denom[i] = static_cast<acc>((math::bin_end(i, rows, H) - math::bin_start(i, rows, H)) * W);
  }
  template <typename T>
  acc at(const T* g, int64_t y) const {
    acc v = 0;
    for (int64_t i = i0[y]; i < i1[y]; ++i) v += static_cast<acc>(g[i]) / denom[i];
    return v;
  }
};

template <typename T>
void mean_pool_backward(const T* G, int64_t rows, Layout layout, at::Tensor& gx) {
  const int64_t B = gx.size(0), C = gx.size(1), H = gx.size(2), W = gx.size(3);
  const MeanRowGrad<acc_t<T>> table(rows, H, W);
  T* GX = gx.mutable_data_ptr<T>();
  if (layout == Layout::NCHW) {
    at::parallel_for(0, B * C * H, grain_for(W), [&](int64_t begin, int64_t end) {
      int64_t p = begin / H, y = begin % H;
      for (int64_t r = begin; r < end; ++r) {
        fill_row<T>(GX + r * W, table.at(G + p * rows, y), W);
        if (++y == H) y = 0, ++p;
      }
    });
    return;
  }
  at::parallel_for(0, B * H, grain_for(W * C), [&](int64_t begin, int64_t end) {
    std::vector<acc_t<T>> v(C);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / H, y = r % H;
      for (int64_t c = 0; c < C; ++c) v[c] = table.at(G + (b * C + c) * rows, y);
      T* block = GX + r * W * C;  // the (W, C) block of image row y
      for (int64_t xw = 0; xw < W; ++xw) store_row<T>(v.data(), block + xw * C, C);
    }
  });
}

// Max mode: zeros, and each bin's gradient at its arg-max element.
template <typename T>
void max_pool_backward(const at::Tensor& grad, const at::Tensor& indices, Layout layout,
                       at::Tensor& gx) {
  using acc = acc_t<T>;
  const int64_t B = gx.size(0), C = gx.size(1), H = gx.size(2), W = gx.size(3);
  const int64_t rows = grad.size(2);
  const T* G = grad.const_data_ptr<T>();
  const int64_t* I = indices.const_data_ptr<int64_t>();
  T* GX = gx.mutable_data_ptr<T>();
  if (layout == Layout::NCHW) {
    at::parallel_for(0, B * C * H, grain_for(W), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t p = r / H, y = r % H;
        T* row = GX + r * W;
        fill_row<T>(row, acc(0), W);
        const int64_t i1 = math::last_bin_of_row(y, rows, H);
        for (int64_t i = math::first_bin_of_row(y, rows, H); i < i1; ++i) {
          const int64_t idx = I[p * rows + i];
          if (idx / W == y)
            row[idx % W] = static_cast<T>(static_cast<acc>(row[idx % W]) +
                                          static_cast<acc>(G[p * rows + i]));
        }
      }
    });
    return;
  }
  at::parallel_for(0, B * H, grain_for(W * C), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / H, y = r % H;
      T* block = GX + r * W * C;  // the (W, C) block of image row y
      fill_row<T>(block, acc(0), W * C);
      const int64_t i0 = math::first_bin_of_row(y, rows, H), i1 = math::last_bin_of_row(y, rows, H);
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t idx = I[(b * C + c) * rows + i];
          if (idx / W != y) continue;
          T& dst = block[(idx % W) * C + c];
          dst = static_cast<T>(static_cast<acc>(dst) + static_cast<acc>(G[(b * C + c) * rows + i]));
        }
      }
    }
  });
}

// Max mode: each index must name an element of its own bin (the arg-max width_pool
// returned); the backward writes the gradient at that index, so an index outside the
// (H, W) plane would write out of bounds and one outside its bin's rows would be lost.
void check_max_indices(const at::Tensor& indices, int64_t H, int64_t W) {
  const int64_t planes = indices.size(0) * indices.size(1), rows = indices.size(2);
  const int64_t* I = indices.const_data_ptr<int64_t>();
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t idx = I[p * rows + i];
      const int64_t lo = math::bin_start(i, rows, H) * W, hi = math::bin_end(i, rows, H) * W;
      TORCH_CHECK(lo <= idx && idx < hi, "hanet.width_pool_backward: indices[", p / indices.size(1),
                  ", ", p % indices.size(1), ", ", i, "] = ", idx, " is not an element of bin ", i,
                  " (flat indices h*W+w in [", lo, ", ", hi, ") of the ", H, "x", W,
                  " input); max-pool indices must come from width_pool(x, ", rows, ", \"max\")");
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> width_pool(const at::Tensor& x_in, int64_t rows,
                                                  c10::string_view mode) {
  check_width_pool(x_in, rows, mode);
  const bool is_max = parse_pool_mode("hanet.width_pool", mode);
  const at::Tensor x = to_supported_layout(x_in);
  const Layout layout = layout_of(x);
  at::Tensor out = at::empty({x.size(0), x.size(1), rows}, x.options());
  at::Tensor indices = is_max ? at::empty({x.size(0), x.size(1), rows}, x.options().dtype(at::kLong))
                              : at::empty({0}, x.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "hanet_width_pool_cpu",
                                  [&] { pool_forward<scalar_t>(x, rows, is_max, layout, out, indices); });
  return {out, indices};
}

at::Tensor width_pool_backward(const at::Tensor& grad_in, const at::Tensor& indices_in,
                                   int64_t height, int64_t width, c10::string_view mode,
                                   bool channels_last) {
  check_width_pool_backward(grad_in, indices_in, height, width, mode);
  const bool is_max = parse_pool_mode("hanet.width_pool_backward", mode);
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor indices = is_max ? indices_in.contiguous() : indices_in;
  if (is_max) check_max_indices(indices, height, width);
  const Layout layout = channels_last ? Layout::NHWC : Layout::NCHW;
  at::Tensor gx = empty_streaming_output({grad.size(0), grad.size(1), height, width},
                                         grad.options().memory_format(memory_format_of(layout)));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(),
                                  "hanet_width_pool_backward_cpu",
                                  [&] {
                                    if (is_max) {
                                      max_pool_backward<scalar_t>(grad, indices, layout, gx);
                                    } else {
                                      mean_pool_backward<scalar_t>(grad.const_data_ptr<scalar_t>(),
                                                                   grad.size(2), layout, gx);
                                    }
                                  });
  return gx;
}

}  // namespace cpu
}  // namespace hanet
