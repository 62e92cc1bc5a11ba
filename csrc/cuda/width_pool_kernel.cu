// CUDA kernels of hanet::width_pool ((B, C, H, W) -> (B, C, rows), adaptive mean / max
// over bins of rows) and its backward (a gather: every input-gradient element written
// once).  Conventions: csrc/common/cuda_helpers.cuh.
#include <tuple>

#include "common/cuda_helpers.cuh"
#include "contract.h"

namespace hanet {
namespace gpu {
namespace {

constexpr int kMaxIters = 4;    // NHWC max-pool backward: columns per thread (registers)
constexpr int kBinSlots = 4;    // NHWC max-pool backward: bins staged per pass

// A running pooling state: sum, or (max, arg-max flat index) with PyTorch's rule.
template <typename acc_t, bool kMax>
struct PoolState {
  acc_t val;
  int64_t idx;
  PoolState() = default;
  __device__ __forceinline__ explicit PoolState(int64_t first)
      : val(kMax ? neg_inf<acc_t>() : acc_t(0)), idx(first) {}
  __device__ __forceinline__ void add(acc_t a, int64_t at) {
    if constexpr (kMax) {
      if (math::takes_max(a, val)) {
        val = a;
        idx = at;
      }
    } else {
      val += a;
    }
  }
  __device__ __forceinline__ void merge(acc_t other_val, int64_t other_idx) {
    if constexpr (kMax) {
      math::merge_max(val, idx, other_val, other_idx);
    } else {
      val += other_val;
    }
  }
  // Writes the result of bin (rows, H) index i at o.
  template <typename scalar_t>
  __device__ __forceinline__ void write(scalar_t* out, int64_t* out_idx, int64_t o, int64_t count,
                                        int64_t W) const {
    if constexpr (kMax) {
      out[o] = static_cast<scalar_t>(val);
      out_idx[o] = idx;
    } else {
      out[o] = static_cast<scalar_t>(val / static_cast<acc_t>(count * W));
    }
  }
};

// NCHW: one group per output bin (b, c, i).  The bin's rows [y0, y1) of plane (b, c) are
// one contiguous span of (y1 - y0) * W elements.  Each lane scans its vectors in index
// order (loading kNchwInFlight ahead), then the group merges (sum, or arg-max with PyTorch's tie/NaN rule).
template <typename scalar_t, typename acc_t, int V, bool kMax>
__global__ void __launch_bounds__(kBlock, min_blocks<acc_t>())
    width_pool_nchw_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out,
                           int64_t* __restrict__ out_idx, int64_t bins, FastDivmod rows,
                           int64_t H, int64_t W, int G) {
  const GroupRows gr(G);
  for (int64_t base = gr.first; base < bins; base += gr.step) {
    const int64_t o = base + gr.slot;
    const bool valid = o < bins;
    int64_t y0 = 0, y1 = 0;
    const scalar_t* span = x;
    if (valid) {
      int64_t p = 0, i = 0;
      rows.divmod(o, &p, &i);
      y0 = math::bin_start(i, rows, H);
      y1 = math::bin_end(i, rows, H);
      span = x + (p * H + y0) * W;
    }
    const int64_t nvec = (y1 - y0) * W / V;  // W % V == 0 on the vector path
    const int64_t first = y0 * W;            // flat index h*W+w of the span's start
    PoolState<acc_t, kMax> st(first);
    stream_vectors<kNchwInFlight, V, false>(gr.g_lane, nvec, G, span, span, V,
                                            [&](int64_t j, const auto& v, const auto&) {
#pragma unroll
      for (int e = 0; e < V; ++e) st.add(static_cast<acc_t>(v.v[e]), first + j * V + e);
    });
    if constexpr (kMax) {
      group_max(st.val, st.idx, G);
    } else {
      st.val = group_sum(st.val, G);
    }
    if (valid && gr.g_lane == 0) st.write(out, out_idx, o, y1 - y0, W);
  }
}

// NHWC: tile = (b, bin i, channel chunk, width split s).  threadIdx.x owns V channels,
// threadIdx.y strides the split's columns (each thread scans its pixels in index
// order); the TY partials are merged by a shared-memory tree.  With one split the tile
// writes the output; otherwise acc_t partials go to part_* for width_pool_finalize.
template <typename scalar_t, typename acc_t, int V, bool kMax>
__global__ void __launch_bounds__(kBlock, min_blocks<acc_t>())
    width_pool_nhwc_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out,
                           int64_t* __restrict__ out_idx, acc_t* __restrict__ part_val,
                           int64_t* __restrict__ part_idx, int64_t B, int64_t C, int64_t H,
                           int64_t W, TileGrid grid) {
  __shared__ acc_t s_val[kBlock * V];
  __shared__ int64_t s_idx[kMax ? kBlock * V : 1];
  const int ty = threadIdx.y, TY = blockDim.y;
  const FastDivmod& rows = grid.Y;  // tile rows are the output bins
  for_each_tile(grid, C / V, [&](const TileCoord& tc) {
    const int64_t i = tc.y, b = tc.b, cv = tc.cv;
    const bool active = tc.active;
    const int64_t y0 = math::bin_start(i, rows, H), y1 = math::bin_end(i, rows, H);
    const int64_t w0 = grid.split_begin(tc.s, W), w1 = grid.split_begin(tc.s + 1, W);

    PoolState<acc_t, kMax> st[V];
#pragma unroll
    for (int e = 0; e < V; ++e) st[e] = PoolState<acc_t, kMax>(y0 * W);
    if (active) {
      for (int64_t y = y0; y < y1; ++y) {
        const scalar_t* px = x + (b * H + y) * W * C + cv * V;
        for (int64_t w = w0 + ty; w < w1; w += TY) {
          const Vec<scalar_t, V> v = load_vec<V>(px + w * C);
#pragma unroll
          for (int e = 0; e < V; ++e) st[e].add(static_cast<acc_t>(v.v[e]), y * W + w);
        }
      }
    }
    tree_over_y<V>(
        [&](int e, int slot) {
          s_val[slot] = st[e].val;
          if constexpr (kMax) s_idx[slot] = st[e].idx;
        },
        [&](int e, int slot) { st[e].merge(s_val[slot], kMax ? s_idx[slot] : 0); });

    if (ty == 0 && active) {
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const int64_t o = (b * C + cv * V + e) * rows.divisor() + i;
        if (grid.splits.divisor() == 1) {
          st[e].write(out, out_idx, o, y1 - y0, W);
        } else {
          const int64_t part = tc.s * B * C * rows.divisor() + o;
          part_val[part] = st[e].val;
          if constexpr (kMax) part_idx[part] = st[e].idx;
        }
      }
    }
    __syncthreads();  // the next tile rewrites the slots
  });
}

// Combines the width splits of width_pool_nhwc_kernel in split order.
template <typename scalar_t, typename acc_t, bool kMax>
__global__ void __launch_bounds__(kBlock, min_blocks<acc_t>())
    width_pool_finalize_kernel(const acc_t* __restrict__ part_val,
                               const int64_t* __restrict__ part_idx, scalar_t* __restrict__ out,
                               int64_t* __restrict__ out_idx, int64_t n, int64_t splits,
                               FastDivmod rows, int64_t H, int64_t W) {
  grid_stride(n, [&](int64_t o) {
    PoolState<acc_t, kMax> st(kMax ? part_idx[o] : 0);
    st.val = part_val[o];
    for (int64_t s = 1; s < splits; ++s) st.merge(part_val[s * n + o], kMax ? part_idx[s * n + o] : 0);
    int64_t p = 0, i = 0;
    rows.divmod(o, &p, &i);
    st.write(out, out_idx, o, math::bin_end(i, rows, H) - math::bin_start(i, rows, H), W);
  });
}

// NCHW backward: one group per image row (b, c, y).  The bins containing y are
// [first_bin_of_row, last_bin_of_row).  Mean: the row is one constant.  Max: element
// (y, w) sums the grads of those bins whose arg-max index is y*W+w, in bin order.
template <typename scalar_t, typename acc_t, int V, bool kMax>
__global__ void __launch_bounds__(kBlock, min_blocks<acc_t>())
    width_pool_backward_nchw_kernel(const scalar_t* __restrict__ grad,
                                    const int64_t* __restrict__ indices,
                                    scalar_t* __restrict__ gx, int64_t nrows, FastDivmod rows,
                                    FastDivmod H, int64_t W, int G) {
  const GroupRows gr(G);
  const int64_t vecs = W / V;
  for (int64_t base = gr.first; base < nrows; base += gr.step) {
    const int64_t r = base + gr.slot;
    if (r >= nrows) continue;
    int64_t p = 0, y = 0;
    H.divmod(r, &p, &y);
    const scalar_t* g = grad + p * rows.divisor();
    scalar_t* dst = gx + r * W;
    if constexpr (!kMax) {
      const auto v = splat<V, scalar_t>(math::mean_grad_at_row<acc_t>(g, y, rows, H, W));
#pragma unroll 1  // no trip-count division (cuda_helpers.cuh)
      for (int64_t j = gr.g_lane; j < vecs; j += G) store_vec<V>(dst + j * V, v);
    } else {
      const int64_t i0 = math::first_bin_of_row(y, rows.divisor(), H);
      const int64_t i1 = math::last_bin_of_row(y, rows.divisor(), H);
      const int64_t* ix = indices + p * rows.divisor();
      for (int64_t j = gr.g_lane; j < vecs; j += G) {
        acc_t a[V] = {};
        const int64_t col0 = y * W + j * V;  // flat index of this vector's first element
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t off = ix[i] - col0;
          if (off >= 0 && off < V) {
            const acc_t gv = static_cast<acc_t>(g[i]);
#pragma unroll
            for (int e = 0; e < V; ++e) {
              if (off == e) a[e] += gv;
            }
          }
        }
        Vec<scalar_t, V> v;
#pragma unroll
        for (int e = 0; e < V; ++e) v.v[e] = static_cast<scalar_t>(a[e]);
        store_vec<V>(dst + j * V, v);
      }
    }
  }
}

// NHWC mean backward: tile = (b, y, channel chunk, width split).  The row's gradient
// is one constant per channel; it is computed once per tile into shared memory (the
// (B, C, rows) grad is channel-strided, so per-element reads would not coalesce), then
// every thread stores it over its columns.
template <typename scalar_t, typename acc_t, int V>
__global__ void __launch_bounds__(kBlock, min_blocks<acc_t>())
    mean_pool_backward_nhwc_kernel(const scalar_t* __restrict__ grad, scalar_t* __restrict__ gx,
                                   int64_t C, int64_t W, FastDivmod rows, TileGrid grid) {
  __shared__ acc_t s_g[kMaxTx * V];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int TX = blockDim.x, TY = blockDim.y;
  const FastDivmod& H = grid.Y;  // tile rows are the input rows
  for_each_tile(grid, C / V, [&](const TileCoord& tc) {
    __syncthreads();  // the previous tile is done reading s_g
    stage_channels<V>(s_g, tc.chunk * TX * V, C, [&](int64_t c) {
      return math::mean_grad_at_row<acc_t>(grad + (tc.b * C + c) * rows.divisor(), tc.y, rows, H,
                                           W);
    });
    __syncthreads();
    if (!tc.active) return;
    Vec<scalar_t, V> v;
#pragma unroll
    for (int e = 0; e < V; ++e) v.v[e] = static_cast<scalar_t>(s_g[e * TX + tx]);
    scalar_t* dst = gx + ((tc.b * H.divisor() + tc.y) * W) * C + tc.cv * V;
    const int64_t w1 = grid.split_begin(tc.s + 1, W);
    for (int64_t w = grid.split_begin(tc.s, W) + ty; w < w1; w += TY) store_vec<V>(dst + w * C, v);
  });
}

// NHWC max backward: tile = (b, y, channel chunk, kMaxIters * TY columns).  For
// kBinSlots bins of row y at a time, shared memory holds per (bin, channel) the arg-max
// column relative to the tile (-1 when outside it) and the bin's grad; each thread
// keeps its kMaxIters x V outputs in registers across the passes and writes them once.
template <typename scalar_t, typename acc_t, int V>
__global__ void __launch_bounds__(kBlock, min_blocks<acc_t>())
    max_pool_backward_nhwc_kernel(const scalar_t* __restrict__ grad,
                                  const int64_t* __restrict__ indices, scalar_t* __restrict__ gx,
                                  int64_t C, int64_t W, int64_t rows, TileGrid grid) {
  constexpr int kSlots = kBinSlots * kMaxTx * V;
  __shared__ acc_t s_g[kSlots];
  __shared__ int s_w[kSlots];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int TX = blockDim.x, TY = blockDim.y;
  const int flat = ty * TX + tx, nthreads = TX * TY;
  const int tile_w = TY * kMaxIters;
  const FastDivmod& H = grid.Y;  // tile rows are the input rows; grid splits: column tiles
  for_each_tile(grid, C / V, [&](const TileCoord& tc) {
    const int64_t b = tc.b, y = tc.y, cv = tc.cv;
    const bool active = tc.active;
    const int64_t c_base = tc.chunk * TX * V;  // first channel of the chunk
    const int64_t w_base = tc.s * tile_w;
    const int64_t i0 = math::first_bin_of_row(y, rows, H), i1 = math::last_bin_of_row(y, rows, H);

    acc_t a[kMaxIters][V] = {};
    for (int64_t j0 = i0; j0 < i1; j0 += kBinSlots) {
      const int nb = static_cast<int>(i1 - j0 < kBinSlots ? i1 - j0 : kBinSlots);
      __syncthreads();  // the previous pass (or tile) is done reading the slots
      // Consecutive threads take consecutive bins of one channel (adjacent in memory):
      // entry ent = ch * nb + jj, advanced by nthreads = dch * nb + djj without dividing.
      const int dch = nthreads / nb, djj = nthreads - dch * nb;
      int ch = flat / nb, jj = flat - ch * nb;
      for (int ent = flat; ent < nb * TX * V; ent += nthreads, ch += dch, jj += djj) {
        if (jj >= nb) {
          jj -= nb;
          ++ch;
        }
        const int64_t c = c_base + ch;
        int rel = -1;
        acc_t gv = 0;
        if (c < C) {
          const int64_t o = (b * C + c) * rows + j0 + jj;
          const int64_t off = indices[o] - (y * W + w_base);
          if (off >= 0 && off < tile_w) {
            rel = static_cast<int>(off);
            gv = static_cast<acc_t>(grad[o]);
          }
        }
        const int slot = (jj * V + ch % V) * TX + ch / V;
        s_w[slot] = rel;
        s_g[slot] = gv;
      }
      __syncthreads();
      if (active) {
        for (int jj = 0; jj < nb; ++jj) {
#pragma unroll
          for (int e = 0; e < V; ++e) {
            const int slot = (jj * V + e) * TX + tx;
            const int rel = s_w[slot];
            if (rel < 0) continue;
            const acc_t gv = s_g[slot];
#pragma unroll
            for (int it = 0; it < kMaxIters; ++it) {
              if (rel == it * TY + ty) a[it][e] += gv;
            }
          }
        }
      }
    }
    if (!active) return;
    scalar_t* dst = gx + ((b * H.divisor() + y) * W) * C + cv * V;
#pragma unroll
    for (int it = 0; it < kMaxIters; ++it) {
      const int64_t w = w_base + it * TY + ty;
      if (w < W) {
        Vec<scalar_t, V> v;
#pragma unroll
        for (int e = 0; e < V; ++e) v.v[e] = static_cast<scalar_t>(a[it][e]);
        store_vec<V>(dst + w * C, v);
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> width_pool(const at::Tensor& x_in, int64_t rows,
                                              c10::string_view mode) {
  check_width_pool(x_in, rows, mode);
  const bool is_max = mode == "max";
  const at::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = to_supported_layout(x_in);
  const Layout layout = layout_of(x);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor out = at::empty({B, C, rows}, x.options());
  at::Tensor indices = is_max ? at::empty({B, C, rows}, x.options().dtype(at::kLong))
                              : at::empty({0}, x.options().dtype(at::kLong));
  if (x.numel() == 0) return {out, indices};  // an empty batch: nothing to launch
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  HANET_DISPATCH_FLOATING(x.scalar_type(), "hanet_width_pool_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int kV = vec_width<scalar_t>();
    const scalar_t* X = x.const_data_ptr<scalar_t>();
    scalar_t* O = out.mutable_data_ptr<scalar_t>();
    int64_t* I = is_max ? indices.mutable_data_ptr<int64_t>() : nullptr;

    if (layout == Layout::NCHW) {
      const int64_t bins = B * C * rows;
      const int64_t max_bin_rows = std::min(H, ceil_div(H, rows) + 1);
      launch_nchw<kV>(
          W % kV == 0 && aligned16(X), is_max, bins,
          [&](int V) { return ceil_div(max_bin_rows * W, V); },
          [&](auto vec, auto flag, const NchwLaunch& nl) {
            width_pool_nchw_kernel<scalar_t, acc_t, decltype(vec)::value, decltype(flag)::value>
                <<<nl.grid, kBlock, 0, stream>>>(X, O, I, bins, FastDivmod(rows), H, W, nl.group);
          },
          kNchwInFlight);
      return;
    }

    with_vec<kV>(C % kV == 0 && aligned16(X), [&](auto vec) {
      constexpr int V = decltype(vec)::value;
      const NhwcLaunch tl = nhwc_launch(C / V, B * rows, W, 2);
      at::Tensor part_val, part_idx;
      if (tl.splits > 1) {
        part_val = at::empty({tl.splits, B, C, rows}, x.options().dtype(acc_dtype<acc_t>()));
        if (is_max) part_idx = at::empty({tl.splits, B, C, rows}, x.options().dtype(at::kLong));
      }
      acc_t* PV = part_val.defined() ? part_val.mutable_data_ptr<acc_t>() : nullptr;
      int64_t* PI = part_idx.defined() ? part_idx.mutable_data_ptr<int64_t>() : nullptr;
      const unsigned grid = grid_for(tl.tiles(B * rows), tl.threads());
      with_flag(is_max, [&](auto flag) {
        constexpr bool kMax = decltype(flag)::value;
        width_pool_nhwc_kernel<scalar_t, acc_t, V, kMax><<<grid, tl.block(), 0, stream>>>(
            X, O, I, PV, PI, B, C, H, W, tl.grid(B, rows));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        if (tl.splits > 1) {
          const int64_t n = B * C * rows;
          width_pool_finalize_kernel<scalar_t, acc_t, kMax>
              <<<grid_for(ceil_div(n, kBlock), kBlock), kBlock, 0, stream>>>(
                  PV, PI, O, I, n, tl.splits, FastDivmod(rows), H, W);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      });
    });
  });
  return {out, indices};
}

at::Tensor width_pool_backward(const at::Tensor& grad_in, const at::Tensor& indices_in,
                               int64_t height, int64_t width, c10::string_view mode,
                               bool channels_last) {
  check_width_pool_backward(grad_in, indices_in, height, width, mode);
  const bool is_max = mode == "max";
  const at::cuda::CUDAGuard guard(grad_in.device());
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor indices = is_max ? indices_in.contiguous() : indices_in;
  const Layout layout = channels_last ? Layout::NHWC : Layout::NCHW;
  const int64_t B = grad.size(0), C = grad.size(1), rows = grad.size(2);
  const int64_t H = height, W = width;
  at::Tensor gx =
      at::empty({B, C, H, W}, grad.options().memory_format(memory_format_of(layout)));
  if (gx.numel() == 0) return gx;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  HANET_DISPATCH_FLOATING(grad.scalar_type(), "hanet_width_pool_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int kV = vec_width<scalar_t>();
    const scalar_t* G = grad.const_data_ptr<scalar_t>();
    const int64_t* I = is_max ? indices.const_data_ptr<int64_t>() : nullptr;
    scalar_t* GX = gx.mutable_data_ptr<scalar_t>();

    if (layout == Layout::NCHW) {
      const int64_t nrows = B * C * H;
      launch_nchw<kV>(
          W % kV == 0 && aligned16(GX), is_max, nrows, [&](int V) { return W / V; },
          [&](auto vec, auto flag, const NchwLaunch& nl) {
            width_pool_backward_nchw_kernel<scalar_t, acc_t, decltype(vec)::value,
                                            decltype(flag)::value>
                <<<nl.grid, kBlock, 0, stream>>>(G, I, GX, nrows, FastDivmod(rows),
                                                 FastDivmod(H), W, nl.group);
          });
      return;
    }

    with_vec<kV>(C % kV == 0 && aligned16(GX), [&](auto vec) {
      constexpr int V = decltype(vec)::value;
      NhwcLaunch tl = nhwc_launch(C / V, B * H, W, 4);
      if (is_max) {
        tl.splits = ceil_div(W, static_cast<int64_t>(tl.ty) * kMaxIters);  // column tiles
        max_pool_backward_nhwc_kernel<scalar_t, acc_t, V>
            <<<grid_for(tl.tiles(B * H), tl.threads()), tl.block(), 0, stream>>>(
                G, I, GX, C, W, rows, tl.grid(B, H));
      } else {
        mean_pool_backward_nhwc_kernel<scalar_t, acc_t, V>
            <<<grid_for(tl.tiles(B * H), tl.threads()), tl.block(), 0, stream>>>(
                G, GX, C, W, FastDivmod(rows), tl.grid(B, H));
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return gx;
}

}  // namespace gpu
}  // namespace hanet
