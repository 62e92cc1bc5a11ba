// CUDA kernels of the hanet ops, registered for the CUDA dispatch key.
//
// Sections: shared device/host helpers, then one section per op (width_pool,
// width_pool_backward, height_interp, height_interp_backward, attention_rescale,
// attention_rescale_backward), then the registration.
//
// Conventions
//  * Every index rule and per-element formula comes from hanet_math.h, which the CPU
//    kernels share, so the CPU tests exercise the same arithmetic.
//  * acc_t = at::opmath_type<scalar_t>: fp32 for float/half/bfloat16, fp64 for double.
//  * Global offsets are int64_t everywhere (tensors may exceed 2^31 elements).
//  * Deterministic: fixed-order per-thread loops, warp butterflies and shared-memory
//    trees; no atomics.  Every output element is written exactly once.
//  * Two layouts, both coalesced:
//      NCHW: a group of G lanes (a power of two <= 32, just covering a row's 16-byte
//            vectors) owns one contiguous image row (or pooling bin); a warp holds 32/G
//            consecutive rows, so it streams one contiguous stretch of memory.
//      NHWC: threadIdx.x walks 16-byte vectors of channels, threadIdx.y walks columns;
//            a block tile is (image, row, channel chunk, column range), and per-channel
//            values (attention, pooled gradients) are staged once per tile in shared
//            memory, laid out [element-in-vector][threadIdx.x] to avoid bank conflicts.
//            When there are few tiles the width is split as well; reductions then
//            write per-split partials that a second pass adds up in split order.
//  * Kernels are grid-stride loops over rows or tiles with one wave of blocks, and
//    take a scalar path (V = 1) when rows / channels are not whole aligned vectors.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <type_traits>

#include "checks.h"
#include "hanet_math.h"

namespace hanet {
namespace gpu {
namespace {

// ============================================================================
// Shared helpers
// ============================================================================

constexpr int kBlock = 256;     // threads per block (NHWC blocks may use fewer)
constexpr int kWarp = 32;
constexpr int kMaxTx = 64;      // NHWC: channel vectors per block row (threadIdx.x)
constexpr int kMinIters = 4;    // NHWC tiles: at least this many columns per thread
constexpr int kMaxIters = 4;    // NHWC max-pool backward: columns per thread (registers)
constexpr int kBinSlots = 4;    // NHWC max-pool backward: bins staged per pass

// 16 bytes of scalar_t: 2 doubles, 4 floats, 8 halves / bfloat16s.
template <typename T>
constexpr int vec_width() {
  return static_cast<int>(16 / sizeof(T));
}

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

template <int N, typename T>
__device__ __forceinline__ Vec<T, N> load_vec(const T* p) {
  return *reinterpret_cast<const Vec<T, N>*>(p);
}

template <int N, typename T>
__device__ __forceinline__ void store_vec(T* p, const Vec<T, N>& v) {
  *reinterpret_cast<Vec<T, N>*>(p) = v;
}

template <typename acc_t>
__device__ __forceinline__ acc_t neg_inf() {
  return -static_cast<acc_t>(INFINITY);
}

// Sum over each aligned group of G lanes (G a power of two <= 32).  The whole warp
// must call it, since the shuffles name every lane.
template <typename T>
__device__ __forceinline__ T group_sum(T v, int G) {
  for (int off = G >> 1; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Arg-max over each aligned group of G lanes, with PyTorch's scan-order rule.
template <typename acc_t>
__device__ __forceinline__ void group_max(acc_t& val, int64_t& idx, int G) {
  for (int off = G >> 1; off > 0; off >>= 1) {
    const acc_t other_val = __shfl_xor_sync(0xffffffffu, val, off);
    const int64_t other_idx = static_cast<int64_t>(
        __shfl_xor_sync(0xffffffffu, static_cast<long long>(idx), off));
    math::merge_max(val, idx, other_val, other_idx);
  }
}

// NCHW row dealing: groups of G lanes, each warp takes 32/G consecutive rows per step.
// The loop bounds are uniform across the warp, so group shuffles stay legal.
struct GroupRows {
  int G;         // lanes per row
  int g_lane;    // lane within the group
  int slot;      // group within the warp
  int64_t first; // first row base of this warp
  int64_t step;  // row-base stride of the grid

  __device__ explicit GroupRows(int group) : G(group) {
    const int lane = static_cast<int>(threadIdx.x) % kWarp;
    const int per_warp = kWarp / G;
    g_lane = lane & (G - 1);
    slot = lane / G;
    const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
    const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
    first = warp * per_warp;
    step = warps * per_warp;
  }
};

HANET_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// (A plain attribute query: ATen/cuda/CUDAContext.h would drag in the cuSPARSE/cuBLAS
// headers, which a bare CUDA toolkit install may lack.)
int sm_count() {
  int count = 0;
  C10_CUDA_CHECK(
      cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, c10::cuda::current_device()));
  return count;
}

// One wave of blocks (2048 resident threads per SM on sm_80/sm_90); kernels loop over
// the remaining work, so the grid never exceeds gridDim.x limits either.
unsigned grid_for(int64_t blocks_needed, int threads_per_block) {
  const int64_t wave = static_cast<int64_t>(sm_count()) * (2048 / threads_per_block);
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(blocks_needed, wave)));
}

// Smallest power of two >= n, capped at a warp: the NCHW group size for n vectors.
int group_size(int64_t n) {
  int g = 1;
  while (g < kWarp && g < n) g <<= 1;
  return g;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// NHWC block shape for `cvecs` channel vectors: balanced chunks of <= kMaxTx vectors
// along threadIdx.x, and a power of two of columns along threadIdx.y.
struct NhwcTiles {
  int tx;
  int ty;
  int64_t chunks;
};

NhwcTiles nhwc_tiles(int64_t cvecs) {
  NhwcTiles t;
  t.chunks = ceil_div(cvecs, kMaxTx);
  t.tx = static_cast<int>(ceil_div(cvecs, t.chunks));
  t.ty = 1;
  while (2 * t.ty * t.tx <= kBlock) t.ty *= 2;
  return t;
}

// NHWC tiles are (b, y, channel chunk, width split).  Few (b, y, chunk) tiles get the
// width split so that `waves` waves of blocks exist (grid-stride then balances them),
// each split keeping >= kMinIters columns per thread.  Reductions combine the split
// partials in split order, which keeps them deterministic.
int64_t width_splits(int64_t tiles, int64_t W, int ty, int threads, int waves) {
  const int64_t wave = static_cast<int64_t>(sm_count()) * (2048 / threads);
  const int64_t max_splits = std::max<int64_t>(1, W / (static_cast<int64_t>(ty) * kMinIters));
  return std::clamp<int64_t>(ceil_div(waves * wave, tiles), 1, max_splits);
}

// Runs f with std::integral_constant<int, V> (16-byte vectors) or <int, 1> (scalars).
template <int V, typename F>
void with_vec(bool vectorised, F&& f) {
  if (vectorised) {
    f(std::integral_constant<int, V>{});
  } else {
    f(std::integral_constant<int, 1>{});
  }
}

template <typename F>
void with_flag(bool flag, F&& f) {
  if (flag) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

template <typename acc_t>
at::ScalarType acc_dtype() {
  return c10::CppTypeToScalarType<acc_t>::value;
}

// ============================================================================
// width_pool: (B, C, H, W) -> (B, C, rows), adaptive mean / max over bins of rows
// ============================================================================

// NCHW: one group per output bin (b, c, i).  The bin's rows [y0, y1) of plane (b, c) are
// one contiguous span of (y1 - y0) * W elements.  Each lane scans its vectors in index
// order, then the group merges (sum, or arg-max with PyTorch's tie/NaN rule).
template <typename scalar_t, typename acc_t, int V, bool kMax>
__global__ void __launch_bounds__(kBlock)
    width_pool_nchw_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out,
                           int64_t* __restrict__ out_idx, int64_t bins, int64_t rows, int64_t H,
                           int64_t W, int G) {
  const GroupRows gr(G);
  for (int64_t base = gr.first; base < bins; base += gr.step) {
    const int64_t o = base + gr.slot;
    const bool valid = o < bins;
    int64_t y0 = 0, y1 = 0;
    const scalar_t* span = x;
    if (valid) {
      const int64_t p = o / rows, i = o - p * rows;
      y0 = math::bin_start(i, rows, H);
      y1 = math::bin_end(i, rows, H);
      span = x + (p * H + y0) * W;
    }
    const int64_t nvec = (y1 - y0) * W / V;  // W % V == 0 on the vector path
    const int64_t first = y0 * W;            // flat index h*W+w of the span's start
    acc_t val = kMax ? neg_inf<acc_t>() : static_cast<acc_t>(0);
    int64_t idx = first;
    for (int64_t j = gr.g_lane; j < nvec; j += G) {
      const Vec<scalar_t, V> v = load_vec<V>(span + j * V);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const acc_t a = static_cast<acc_t>(v.v[e]);
        if constexpr (kMax) {
          if (math::takes_max(a, val)) {
            val = a;
            idx = first + j * V + e;
          }
        } else {
          val += a;
        }
      }
    }
    if constexpr (kMax) {
      group_max(val, idx, G);
    } else {
      val = group_sum(val, G);
    }
    if (valid && gr.g_lane == 0) {
      if constexpr (kMax) {
        out[o] = static_cast<scalar_t>(val);
        out_idx[o] = idx;
      } else {
        out[o] = static_cast<scalar_t>(val / static_cast<acc_t>((y1 - y0) * W));
      }
    }
  }
}

// NHWC: tile = (b, bin i, channel chunk, width split s).  threadIdx.x owns V channels,
// threadIdx.y strides the split's columns (each thread scans its pixels in index
// order); the TY partials are merged by a shared-memory tree.  With one split the tile
// writes the output; otherwise acc_t partials go to part_* for width_pool_finalize.
template <typename scalar_t, typename acc_t, int V, bool kMax>
__global__ void __launch_bounds__(kBlock)
    width_pool_nhwc_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out,
                           int64_t* __restrict__ out_idx, acc_t* __restrict__ part_val,
                           int64_t* __restrict__ part_idx, int64_t B, int64_t C, int64_t H,
                           int64_t W, int64_t rows, int64_t chunks, int64_t splits) {
  __shared__ acc_t s_val[kBlock * V];
  __shared__ int64_t s_idx[kMax ? kBlock * V : 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int TX = blockDim.x, TY = blockDim.y;
  const int64_t cvecs = C / V;
  const int64_t tiles = B * rows * chunks * splits;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    int64_t t = tile;
    const int64_t s = t % splits;
    t /= splits;
    const int64_t chunk = t % chunks;
    t /= chunks;
    const int64_t i = t % rows;
    const int64_t b = t / rows;
    const int64_t cv = chunk * TX + tx;
    const bool active = cv < cvecs;
    const int64_t y0 = math::bin_start(i, rows, H), y1 = math::bin_end(i, rows, H);
    const int64_t w0 = s * W / splits, w1 = (s + 1) * W / splits;

    acc_t val[V];
    int64_t idx[V];
#pragma unroll
    for (int e = 0; e < V; ++e) {
      val[e] = kMax ? neg_inf<acc_t>() : static_cast<acc_t>(0);
      idx[e] = y0 * W;
    }
    if (active) {
      for (int64_t y = y0; y < y1; ++y) {
        const scalar_t* px = x + (b * H + y) * W * C + cv * V;
        for (int64_t w = w0 + ty; w < w1; w += TY) {
          const Vec<scalar_t, V> v = load_vec<V>(px + w * C);
#pragma unroll
          for (int e = 0; e < V; ++e) {
            const acc_t a = static_cast<acc_t>(v.v[e]);
            if constexpr (kMax) {
              if (math::takes_max(a, val[e])) {
                val[e] = a;
                idx[e] = y * W + w;
              }
            } else {
              val[e] += a;
            }
          }
        }
      }
    }

    // Tree over threadIdx.y (TY is a power of two); slots are [e][ty][tx].
#pragma unroll
    for (int e = 0; e < V; ++e) {
      s_val[(e * TY + ty) * TX + tx] = val[e];
      if constexpr (kMax) s_idx[(e * TY + ty) * TX + tx] = idx[e];
    }
    __syncthreads();
    for (int off = TY >> 1; off > 0; off >>= 1) {
      if (ty < off) {
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const int mine = (e * TY + ty) * TX + tx, other = (e * TY + ty + off) * TX + tx;
          if constexpr (kMax) {
            math::merge_max(val[e], idx[e], s_val[other], s_idx[other]);
            s_idx[mine] = idx[e];
          } else {
            val[e] += s_val[other];
          }
          s_val[mine] = val[e];
        }
      }
      __syncthreads();
    }

    if (ty == 0 && active) {
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const int64_t o = (b * C + cv * V + e) * rows + i;
        if (splits == 1) {
          if constexpr (kMax) {
            out[o] = static_cast<scalar_t>(val[e]);
            out_idx[o] = idx[e];
          } else {
            out[o] = static_cast<scalar_t>(val[e] / static_cast<acc_t>((y1 - y0) * W));
          }
        } else {
          part_val[s * B * C * rows + o] = val[e];
          if constexpr (kMax) part_idx[s * B * C * rows + o] = idx[e];
        }
      }
    }
    __syncthreads();  // the next tile rewrites the slots
  }
}

// Combines the width splits of width_pool_nhwc_kernel in split order.
template <typename scalar_t, typename acc_t, bool kMax>
__global__ void __launch_bounds__(kBlock)
    width_pool_finalize_kernel(const acc_t* __restrict__ part_val,
                               const int64_t* __restrict__ part_idx, scalar_t* __restrict__ out,
                               int64_t* __restrict__ out_idx, int64_t n, int64_t splits,
                               int64_t rows, int64_t H, int64_t W) {
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < n;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    acc_t val = part_val[o];
    if constexpr (kMax) {
      int64_t idx = part_idx[o];
      for (int64_t s = 1; s < splits; ++s) {
        math::merge_max(val, idx, part_val[s * n + o], part_idx[s * n + o]);
      }
      out[o] = static_cast<scalar_t>(val);
      out_idx[o] = idx;
    } else {
      for (int64_t s = 1; s < splits; ++s) val += part_val[s * n + o];
      const int64_t i = o % rows;
      const int64_t count = math::bin_end(i, rows, H) - math::bin_start(i, rows, H);
      out[o] = static_cast<scalar_t>(val / static_cast<acc_t>(count * W));
    }
  }
}

std::tuple<at::Tensor, at::Tensor> width_pool_cuda(const at::Tensor& x_in, int64_t rows,
                                                   c10::string_view mode) {
  check_width_pool(x_in, rows, mode);
  const bool is_max = parse_pool_mode("hanet.width_pool", mode);
  const at::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = to_supported_layout(x_in);
  const Layout layout = layout_of(x);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor out = at::empty({B, C, rows}, x.options());
  at::Tensor indices = is_max ? at::empty({B, C, rows}, x.options().dtype(at::kLong))
                              : at::empty({0}, x.options().dtype(at::kLong));
  if (x.numel() == 0) return {out, indices};  // rejected by the checks; never launch empty
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "hanet_width_pool_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int kV = vec_width<scalar_t>();
    const scalar_t* X = x.const_data_ptr<scalar_t>();
    scalar_t* O = out.mutable_data_ptr<scalar_t>();
    int64_t* I = is_max ? indices.mutable_data_ptr<int64_t>() : nullptr;

    if (layout == Layout::NCHW) {
      const int64_t bins = B * C * rows;
      const int64_t max_bin_rows = std::min(H, ceil_div(H, rows) + 1);
      with_vec<kV>(W % kV == 0 && aligned16(X), [&](auto vec) {
        constexpr int V = decltype(vec)::value;
        const int G = group_size(ceil_div(max_bin_rows * W, V));
        const unsigned grid = grid_for(ceil_div(bins, kBlock / G), kBlock);
        with_flag(is_max, [&](auto flag) {
          constexpr bool kMax = decltype(flag)::value;
          width_pool_nchw_kernel<scalar_t, acc_t, V, kMax>
              <<<grid, kBlock, 0, stream>>>(X, O, I, bins, rows, H, W, G);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
      return;
    }

    with_vec<kV>(C % kV == 0 && aligned16(X), [&](auto vec) {
      constexpr int V = decltype(vec)::value;
      const NhwcTiles tl = nhwc_tiles(C / V);
      const int threads = tl.tx * tl.ty;
      const int64_t base_tiles = B * rows * tl.chunks;
      const int64_t splits = width_splits(base_tiles, W, tl.ty, threads, 2);
      at::Tensor part_val, part_idx;
      if (splits > 1) {
        part_val = at::empty({splits, B, C, rows}, x.options().dtype(acc_dtype<acc_t>()));
        if (is_max) part_idx = at::empty({splits, B, C, rows}, x.options().dtype(at::kLong));
      }
      acc_t* PV = part_val.defined() ? part_val.mutable_data_ptr<acc_t>() : nullptr;
      int64_t* PI = part_idx.defined() ? part_idx.mutable_data_ptr<int64_t>() : nullptr;
      const dim3 block(tl.tx, tl.ty);
      const unsigned grid = grid_for(base_tiles * splits, threads);
      with_flag(is_max, [&](auto flag) {
        constexpr bool kMax = decltype(flag)::value;
        width_pool_nhwc_kernel<scalar_t, acc_t, V, kMax><<<grid, block, 0, stream>>>(
            X, O, I, PV, PI, B, C, H, W, rows, tl.chunks, splits);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        if (splits > 1) {
          const int64_t n = B * C * rows;
          width_pool_finalize_kernel<scalar_t, acc_t, kMax>
              <<<grid_for(ceil_div(n, kBlock), kBlock), kBlock, 0, stream>>>(
                  PV, PI, O, I, n, splits, rows, H, W);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      });
    });
  });
  return {out, indices};
}

// ============================================================================
// width_pool_backward: (B, C, rows) -> (B, C, height, width), a gather per element
// ============================================================================

// NCHW: one group per image row (b, c, y).  The bins containing y are
// [first_bin_of_row, last_bin_of_row).  Mean: the row is one constant.  Max: element
// (y, w) sums the grads of those bins whose arg-max index is y*W+w, in bin order.
template <typename scalar_t, typename acc_t, int V, bool kMax>
__global__ void __launch_bounds__(kBlock)
    width_pool_backward_nchw_kernel(const scalar_t* __restrict__ grad,
                                    const int64_t* __restrict__ indices,
                                    scalar_t* __restrict__ gx, int64_t nrows, int64_t rows,
                                    int64_t H, int64_t W, int G) {
  const GroupRows gr(G);
  const int64_t vecs = W / V;
  for (int64_t base = gr.first; base < nrows; base += gr.step) {
    const int64_t r = base + gr.slot;
    if (r >= nrows) continue;
    const int64_t p = r / H, y = r - p * H;
    const int64_t i0 = math::first_bin_of_row(y, rows, H), i1 = math::last_bin_of_row(y, rows, H);
    const scalar_t* g = grad + p * rows;
    scalar_t* dst = gx + r * W;
    if constexpr (!kMax) {
      acc_t a = 0;
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t count = math::bin_end(i, rows, H) - math::bin_start(i, rows, H);
        a += static_cast<acc_t>(g[i]) / static_cast<acc_t>(count * W);
      }
      Vec<scalar_t, V> v;
#pragma unroll
      for (int e = 0; e < V; ++e) v.v[e] = static_cast<scalar_t>(a);
      for (int64_t j = gr.g_lane; j < vecs; j += G) store_vec<V>(dst + j * V, v);
    } else {
      const int64_t* ix = indices + p * rows;
      for (int64_t j = gr.g_lane; j < vecs; j += G) {
        acc_t a[V];
#pragma unroll
        for (int e = 0; e < V; ++e) a[e] = 0;
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

// NHWC mean: tile = (b, y, channel chunk, width split).  The row's gradient is one
// constant per channel; it is computed once per tile into shared memory (the (B, C,
// rows) grad is channel-strided, so per-element reads would not coalesce), then every
// thread stores it over its columns.
template <typename scalar_t, typename acc_t, int V>
__global__ void __launch_bounds__(kBlock)
    mean_pool_backward_nhwc_kernel(const scalar_t* __restrict__ grad, scalar_t* __restrict__ gx,
                                   int64_t B, int64_t C, int64_t H, int64_t W, int64_t rows,
                                   int64_t chunks, int64_t splits) {
  __shared__ acc_t s_g[kMaxTx * V];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int TX = blockDim.x, TY = blockDim.y;
  const int flat = ty * TX + tx, nthreads = TX * TY;
  const int64_t cvecs = C / V;
  const int64_t tiles = B * H * chunks * splits;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    int64_t t = tile;
    const int64_t s = t % splits;
    t /= splits;
    const int64_t chunk = t % chunks;
    t /= chunks;
    const int64_t y = t % H;
    const int64_t b = t / H;
    const int64_t cv = chunk * TX + tx;
    const int64_t c_base = chunk * TX * V;  // first channel of the chunk
    const int64_t i0 = math::first_bin_of_row(y, rows, H), i1 = math::last_bin_of_row(y, rows, H);
    __syncthreads();  // the previous tile is done reading s_g
    for (int ch = flat; ch < TX * V; ch += nthreads) {
      const int64_t c = c_base + ch;
      acc_t a = 0;
      if (c < C) {
        const scalar_t* g = grad + (b * C + c) * rows;
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t count = math::bin_end(i, rows, H) - math::bin_start(i, rows, H);
          a += static_cast<acc_t>(g[i]) / static_cast<acc_t>(count * W);
        }
      }
      s_g[(ch % V) * TX + ch / V] = a;
    }
    __syncthreads();
    if (cv >= cvecs) continue;
    Vec<scalar_t, V> v;
#pragma unroll
    for (int e = 0; e < V; ++e) v.v[e] = static_cast<scalar_t>(s_g[e * TX + tx]);
    scalar_t* dst = gx + ((b * H + y) * W) * C + cv * V;
    const int64_t w1 = (s + 1) * W / splits;
    for (int64_t w = s * W / splits + ty; w < w1; w += TY) store_vec<V>(dst + w * C, v);
  }
}

// NHWC max: tile = (b, y, channel chunk, kMaxIters * TY columns).  For kBinSlots bins
// of row y at a time, shared memory holds per (bin, channel) the arg-max column
// relative to the tile (-1 when outside it) and the bin's grad; each thread keeps its
// kMaxIters x V outputs in registers across the passes and writes them once.
template <typename scalar_t, typename acc_t, int V>
__global__ void __launch_bounds__(kBlock)
    max_pool_backward_nhwc_kernel(const scalar_t* __restrict__ grad,
                                  const int64_t* __restrict__ indices, scalar_t* __restrict__ gx,
                                  int64_t B, int64_t C, int64_t H, int64_t W, int64_t rows,
                                  int64_t chunks) {
  constexpr int kSlots = kBinSlots * kMaxTx * V;
  __shared__ acc_t s_g[kSlots];
  __shared__ int s_w[kSlots];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int TX = blockDim.x, TY = blockDim.y;
  const int flat = ty * TX + tx, nthreads = TX * TY;
  const int64_t cvecs = C / V;
  const int tile_w = TY * kMaxIters;
  const int64_t wtiles = ceil_div(W, tile_w);
  const int64_t tiles = B * H * chunks * wtiles;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    int64_t t = tile;
    const int64_t wt = t % wtiles;
    t /= wtiles;
    const int64_t chunk = t % chunks;
    t /= chunks;
    const int64_t y = t % H;
    const int64_t b = t / H;
    const int64_t cv = chunk * TX + tx;
    const bool active = cv < cvecs;
    const int64_t c_base = chunk * TX * V;  // first channel of the chunk
    const int64_t w_base = wt * tile_w;
    const int64_t i0 = math::first_bin_of_row(y, rows, H), i1 = math::last_bin_of_row(y, rows, H);

    acc_t a[kMaxIters][V];
#pragma unroll
    for (int it = 0; it < kMaxIters; ++it) {
#pragma unroll
      for (int e = 0; e < V; ++e) a[it][e] = 0;
    }
    for (int64_t j0 = i0; j0 < i1; j0 += kBinSlots) {
      const int nb = static_cast<int>(i1 - j0 < kBinSlots ? i1 - j0 : kBinSlots);
      __syncthreads();  // the previous pass (or tile) is done reading the slots
      // Consecutive threads take consecutive bins of one channel (adjacent in memory).
      for (int ent = flat; ent < nb * TX * V; ent += nthreads) {
        const int ch = ent / nb, jj = ent - ch * nb;
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
    if (!active) continue;
    scalar_t* dst = gx + ((b * H + y) * W) * C + cv * V;
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
  }
}

at::Tensor width_pool_backward_cuda(const at::Tensor& grad_in, const at::Tensor& indices_in,
                                    int64_t height, int64_t width, c10::string_view mode,
                                    bool channels_last) {
  check_width_pool_backward(grad_in, indices_in, height, width, mode);
  const bool is_max = parse_pool_mode("hanet.width_pool_backward", mode);
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

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "hanet_width_pool_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int kV = vec_width<scalar_t>();
    const scalar_t* G = grad.const_data_ptr<scalar_t>();
    const int64_t* I = is_max ? indices.const_data_ptr<int64_t>() : nullptr;
    scalar_t* GX = gx.mutable_data_ptr<scalar_t>();

    if (layout == Layout::NCHW) {
      const int64_t nrows = B * C * H;
      with_vec<kV>(W % kV == 0 && aligned16(GX), [&](auto vec) {
        constexpr int V = decltype(vec)::value;
        const int group = group_size(W / V);
        const unsigned grid = grid_for(ceil_div(nrows, kBlock / group), kBlock);
        with_flag(is_max, [&](auto flag) {
          constexpr bool kMax = decltype(flag)::value;
          width_pool_backward_nchw_kernel<scalar_t, acc_t, V, kMax>
              <<<grid, kBlock, 0, stream>>>(G, I, GX, nrows, rows, H, W, group);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
      return;
    }

    with_vec<kV>(C % kV == 0 && aligned16(GX), [&](auto vec) {
      constexpr int V = decltype(vec)::value;
      const NhwcTiles tl = nhwc_tiles(C / V);
      const int threads = tl.tx * tl.ty;
      const dim3 block(tl.tx, tl.ty);
      const int64_t base_tiles = B * H * tl.chunks;
      if (is_max) {
        const int64_t tiles = base_tiles * ceil_div(W, static_cast<int64_t>(tl.ty) * kMaxIters);
        max_pool_backward_nhwc_kernel<scalar_t, acc_t, V>
            <<<grid_for(tiles, threads), block, 0, stream>>>(G, I, GX, B, C, H, W, rows,
                                                             tl.chunks);
      } else {
        const int64_t splits = width_splits(base_tiles, W, tl.ty, threads, 4);
        mean_pool_backward_nhwc_kernel<scalar_t, acc_t, V>
            <<<grid_for(base_tiles * splits, threads), block, 0, stream>>>(
                G, GX, B, C, H, W, rows, tl.chunks, splits);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return gx;
}

// ============================================================================
// height_interp: (B, C, h) -> (B, C, size), linear, align_corners=False
// ============================================================================

// One thread per output element; consecutive threads read neighbouring taps.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlock)
    height_interp_kernel(const scalar_t* __restrict__ a, scalar_t* __restrict__ out, int64_t n,
                         int64_t in_size, int64_t size) {
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < n;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t p = o / size, d = o - p * size;
    const math::LinearTap<acc_t> t = math::linear_tap<acc_t>(d, in_size, size);
    const scalar_t* src = a + p * in_size;
    out[o] = static_cast<scalar_t>(t.w0 * static_cast<acc_t>(src[t.i0]) +
                                   t.w1 * static_cast<acc_t>(src[t.i1]));
  }
}

at::Tensor height_interp_cuda(const at::Tensor& a_in, int64_t size) {
  check_height_interp(a_in, size);
  const at::cuda::CUDAGuard guard(a_in.device());
  const at::Tensor a = a_in.contiguous();
  const int64_t in_size = a.size(2);
  at::Tensor out = at::empty({a.size(0), a.size(1), size}, a.options());
  const int64_t n = out.numel();
  if (n == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, a.scalar_type(), "hanet_height_interp_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    height_interp_kernel<scalar_t, acc_t>
        <<<grid_for(ceil_div(n, kBlock), kBlock), kBlock, 0, stream>>>(
            a.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n, in_size, size);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

// ============================================================================
// height_interp_backward: (B, C, size) -> (B, C, in_size), the adjoint of height_interp
// ============================================================================

// One thread per input element gathers the outputs that read it (math::linear_backward_at:
// a binary search on the forward taps, then the same terms the scatter adds, in order).
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlock)
    height_interp_backward_kernel(const scalar_t* __restrict__ grad, scalar_t* __restrict__ out,
                                  int64_t n, int64_t in_size, int64_t size) {
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < n;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t p = o / in_size, j = o - p * in_size;
    out[o] = static_cast<scalar_t>(
        math::linear_backward_at<acc_t>(grad + p * size, size, j, in_size));
  }
}

at::Tensor height_interp_backward_cuda(const at::Tensor& grad_in, int64_t in_size) {
  check_height_interp_backward(grad_in, in_size);
  const at::cuda::CUDAGuard guard(grad_in.device());
  const at::Tensor grad = grad_in.contiguous();
  const int64_t size = grad.size(2);
  at::Tensor out = at::empty({grad.size(0), grad.size(1), in_size}, grad.options());
  const int64_t n = out.numel();
  if (n == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "hanet_height_interp_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    height_interp_backward_kernel<scalar_t, acc_t>
        <<<grid_for(ceil_div(n, kBlock), kBlock), kBlock, 0, stream>>>(
            grad.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n, in_size, size);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

// ============================================================================
// attention_rescale: out = feat * A[b, c, y], A = interp(sigmoid(logits), H)
// ============================================================================

// NCHW: one group per image row (b, c, y); A is computed once per row (per lane).
template <typename scalar_t, typename acc_t, int V>
__global__ void __launch_bounds__(kBlock)
    attention_rescale_nchw_kernel(const scalar_t* __restrict__ feat,
                                  const scalar_t* __restrict__ logits,
                                  scalar_t* __restrict__ out, int64_t nrows, int64_t H, int64_t W,
                                  int64_t h, int G) {
  const GroupRows gr(G);
  const int64_t vecs = W / V;
  for (int64_t base = gr.first; base < nrows; base += gr.step) {
    const int64_t r = base + gr.slot;
    if (r >= nrows) continue;
    const int64_t p = r / H, y = r - p * H;
    const acc_t A = math::interp_sigmoid<acc_t>(logits + p * h, y, h, H);
    const scalar_t* src = feat + r * W;
    scalar_t* dst = out + r * W;
    for (int64_t j = gr.g_lane; j < vecs; j += G) {
      Vec<scalar_t, V> v = load_vec<V>(src + j * V);
#pragma unroll
      for (int e = 0; e < V; ++e) v.v[e] = static_cast<scalar_t>(static_cast<acc_t>(v.v[e]) * A);
      store_vec<V>(dst + j * V, v);
    }
  }
}

// Stages A[b, c, y] for the tile's channels in shared memory, layout [e][tx].
template <typename scalar_t, typename acc_t, int V>
__device__ __forceinline__ void stage_attention(acc_t* s_a, const scalar_t* __restrict__ logits,
                                                int64_t b, int64_t y, int64_t c_base, int64_t C,
                                                int64_t H, int64_t h) {
  const int TX = blockDim.x;
  const int flat = threadIdx.y * TX + threadIdx.x, nthreads = TX * blockDim.y;
  for (int ch = flat; ch < TX * V; ch += nthreads) {
    const int64_t c = c_base + ch;
    s_a[(ch % V) * TX + ch / V] =
        c < C ? math::interp_sigmoid<acc_t>(logits + (b * C + c) * h, y, h, H) : acc_t(0);
  }
}

// NHWC: tile = (b, y, channel chunk, width split); A is staged once per tile.
template <typename scalar_t, typename acc_t, int V>
__global__ void __launch_bounds__(kBlock)
    attention_rescale_nhwc_kernel(const scalar_t* __restrict__ feat,
                                  const scalar_t* __restrict__ logits,
                                  scalar_t* __restrict__ out, int64_t B, int64_t C, int64_t H,
                                  int64_t W, int64_t h, int64_t chunks, int64_t splits) {
  __shared__ acc_t s_a[kMaxTx * V];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int TX = blockDim.x, TY = blockDim.y;
  const int64_t cvecs = C / V;
  const int64_t tiles = B * H * chunks * splits;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    int64_t t = tile;
    const int64_t s = t % splits;
    t /= splits;
    const int64_t chunk = t % chunks;
    t /= chunks;
    const int64_t y = t % H;
    const int64_t b = t / H;
    const int64_t cv = chunk * TX + tx;
    __syncthreads();  // the previous tile is done reading s_a
    stage_attention<scalar_t, acc_t, V>(s_a, logits, b, y, chunk * TX * V, C, H, h);
    __syncthreads();
    if (cv >= cvecs) continue;
    acc_t A[V];
#pragma unroll
    for (int e = 0; e < V; ++e) A[e] = s_a[e * TX + tx];
    const int64_t off = ((b * H + y) * W) * C + cv * V;
    const int64_t w1 = (s + 1) * W / splits;
    for (int64_t w = s * W / splits + ty; w < w1; w += TY) {
      Vec<scalar_t, V> v = load_vec<V>(feat + off + w * C);
#pragma unroll
      for (int e = 0; e < V; ++e) v.v[e] = static_cast<scalar_t>(static_cast<acc_t>(v.v[e]) * A[e]);
      store_vec<V>(out + off + w * C, v);
    }
  }
}

at::Tensor attention_rescale_cuda(const at::Tensor& feat_in, const at::Tensor& logits_in) {
  check_attention_rescale(feat_in, logits_in);
  const at::cuda::CUDAGuard guard(feat_in.device());
  const at::Tensor feat = to_supported_layout(feat_in);
  const Layout layout = layout_of(feat);
  const at::Tensor logits = logits_in.contiguous();
  const int64_t B = feat.size(0), C = feat.size(1), H = feat.size(2), W = feat.size(3);
  const int64_t h = logits.size(2);
  at::Tensor out = at::empty(feat.sizes(), feat.options().memory_format(memory_format_of(layout)));
  if (out.numel() == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, feat.scalar_type(), "hanet_attention_rescale_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int kV = vec_width<scalar_t>();
    const scalar_t* F = feat.const_data_ptr<scalar_t>();
    const scalar_t* L = logits.const_data_ptr<scalar_t>();
    scalar_t* O = out.mutable_data_ptr<scalar_t>();
    const bool aligned = aligned16(F) && aligned16(O);

    if (layout == Layout::NCHW) {
      const int64_t nrows = B * C * H;
      with_vec<kV>(W % kV == 0 && aligned, [&](auto vec) {
        constexpr int V = decltype(vec)::value;
        const int group = group_size(W / V);
        attention_rescale_nchw_kernel<scalar_t, acc_t, V>
            <<<grid_for(ceil_div(nrows, kBlock / group), kBlock), kBlock, 0, stream>>>(
                F, L, O, nrows, H, W, h, group);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
      return;
    }

    with_vec<kV>(C % kV == 0 && aligned, [&](auto vec) {
      constexpr int V = decltype(vec)::value;
      const NhwcTiles tl = nhwc_tiles(C / V);
      const int threads = tl.tx * tl.ty;
      const int64_t base_tiles = B * H * tl.chunks;
      const int64_t splits = width_splits(base_tiles, W, tl.ty, threads, 4);
      attention_rescale_nhwc_kernel<scalar_t, acc_t, V>
          <<<grid_for(base_tiles * splits, threads), dim3(tl.tx, tl.ty), 0, stream>>>(
              F, L, O, B, C, H, W, h, tl.chunks, splits);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

// ============================================================================
// attention_rescale_backward
//   grad_feat   = grad * A
//   gA[b, c, y] = sum_w grad * feat                      (acc_t buffer, S width splits)
//   grad_logits = interp_backward(gA, h) * s * (1 - s),  s = sigmoid(logits)
// ============================================================================

// NCHW: one group per image row; grad and feat are read once, grad_feat written once,
// and the row's dot product is reduced across the group (fixed butterfly order).
template <typename scalar_t, typename acc_t, int V>
__global__ void __launch_bounds__(kBlock)
    attention_backward_nchw_kernel(const scalar_t* __restrict__ grad,
                                   const scalar_t* __restrict__ feat,
                                   const scalar_t* __restrict__ logits,
                                   scalar_t* __restrict__ grad_feat, acc_t* __restrict__ gA,
                                   int64_t nrows, int64_t H, int64_t W, int64_t h, int G) {
  const GroupRows gr(G);
  const int64_t vecs = W / V;
  for (int64_t base = gr.first; base < nrows; base += gr.step) {
    const int64_t r = base + gr.slot;
    const bool valid = r < nrows;
    acc_t dot = 0;
    if (valid) {
      const int64_t p = r / H, y = r - p * H;
      const acc_t A = math::interp_sigmoid<acc_t>(logits + p * h, y, h, H);
      const int64_t off = r * W;
      for (int64_t j = gr.g_lane; j < vecs; j += G) {
        const Vec<scalar_t, V> g = load_vec<V>(grad + off + j * V);
        const Vec<scalar_t, V> f = load_vec<V>(feat + off + j * V);
        Vec<scalar_t, V> gf;
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const acc_t ge = static_cast<acc_t>(g.v[e]);
          gf.v[e] = static_cast<scalar_t>(ge * A);
          dot += ge * static_cast<acc_t>(f.v[e]);
        }
        store_vec<V>(grad_feat + off + j * V, gf);
      }
    }
    dot = group_sum(dot, G);  // whole warp, outside the `valid` branch
    if (valid && gr.g_lane == 0) gA[r] = dot;
  }
}

// NHWC: tile = (b, y, channel chunk, width split s); each block owns its slice of the
// (b, y) row, threadIdx.x along channels, threadIdx.y striding the split's columns.
// Per-channel dot products are merged over threadIdx.y by a shared-memory tree and
// stored to gA split s (no atomics; the splits are summed in order afterwards).
template <typename scalar_t, typename acc_t, int V>
__global__ void __launch_bounds__(kBlock)
    attention_backward_nhwc_kernel(const scalar_t* __restrict__ grad,
                                   const scalar_t* __restrict__ feat,
                                   const scalar_t* __restrict__ logits,
                                   scalar_t* __restrict__ grad_feat, acc_t* __restrict__ gA,
                                   int64_t B, int64_t C, int64_t H, int64_t W, int64_t h,
                                   int64_t chunks, int64_t splits) {
  __shared__ acc_t s_a[kMaxTx * V];
  __shared__ acc_t s_red[kBlock * V];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int TX = blockDim.x, TY = blockDim.y;
  const int64_t cvecs = C / V;
  const int64_t tiles = B * H * chunks * splits;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    int64_t t = tile;
    const int64_t s = t % splits;
    t /= splits;
    const int64_t chunk = t % chunks;
    t /= chunks;
    const int64_t y = t % H;
    const int64_t b = t / H;
    const int64_t cv = chunk * TX + tx;
    const bool active = cv < cvecs;
    const int64_t w0 = s * W / splits, w1 = (s + 1) * W / splits;
    __syncthreads();  // the previous tile is done with s_a and s_red
    stage_attention<scalar_t, acc_t, V>(s_a, logits, b, y, chunk * TX * V, C, H, h);
    __syncthreads();

    acc_t dot[V];
#pragma unroll
    for (int e = 0; e < V; ++e) dot[e] = 0;
    if (active) {
      acc_t A[V];
#pragma unroll
      for (int e = 0; e < V; ++e) A[e] = s_a[e * TX + tx];
      const int64_t off = ((b * H + y) * W) * C + cv * V;
      for (int64_t w = w0 + ty; w < w1; w += TY) {
        const Vec<scalar_t, V> g = load_vec<V>(grad + off + w * C);
        const Vec<scalar_t, V> f = load_vec<V>(feat + off + w * C);
        Vec<scalar_t, V> gf;
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const acc_t ge = static_cast<acc_t>(g.v[e]);
          gf.v[e] = static_cast<scalar_t>(ge * A[e]);
          dot[e] += ge * static_cast<acc_t>(f.v[e]);
        }
        store_vec<V>(grad_feat + off + w * C, gf);
      }
    }

    // Tree over threadIdx.y (TY is a power of two); slots are [e][ty][tx].
#pragma unroll
    for (int e = 0; e < V; ++e) s_red[(e * TY + ty) * TX + tx] = dot[e];
    __syncthreads();
    for (int stride = TY >> 1; stride > 0; stride >>= 1) {
      if (ty < stride) {
#pragma unroll
        for (int e = 0; e < V; ++e) {
          dot[e] += s_red[(e * TY + ty + stride) * TX + tx];
          s_red[(e * TY + ty) * TX + tx] = dot[e];
        }
      }
      __syncthreads();
    }
    if (ty == 0 && active) {
#pragma unroll
      for (int e = 0; e < V; ++e) gA[(s * B * C + b * C + cv * V + e) * H + y] = dot[e];
    }
  }
}

// One thread per logit (b, c, j): gathers gA (summing the width splits in order) over
// the rows that read j, then applies the sigmoid derivative.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlock)
    attention_logits_grad_kernel(const acc_t* __restrict__ gA, const scalar_t* __restrict__ logits,
                                 scalar_t* __restrict__ grad_logits, int64_t n, int64_t h,
                                 int64_t H, int64_t split_stride, int64_t splits) {
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < n;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t p = o / h, j = o - p * h;
    const acc_t* row = gA + p * H;
    int64_t begin = 0, end = 0;
    math::dst_range_reading<acc_t>(j, h, H, &begin, &end);
    acc_t acc = 0;
    for (int64_t d = begin; d < end; ++d) {
      acc_t g = row[d];
      for (int64_t s = 1; s < splits; ++s) g += row[s * split_stride + d];
      const math::LinearTap<acc_t> t = math::linear_tap<acc_t>(d, h, H);
      if (t.i0 == j) acc += t.w0 * g;
      if (t.i1 == j) acc += t.w1 * g;
    }
    const acc_t sg = math::sigmoid(static_cast<acc_t>(logits[o]));
    grad_logits[o] = static_cast<scalar_t>(acc * sg * (static_cast<acc_t>(1) - sg));
  }
}

std::tuple<at::Tensor, at::Tensor> attention_rescale_backward_cuda(const at::Tensor& grad_in,
                                                                   const at::Tensor& feat_in,
                                                                   const at::Tensor& logits_in) {
  check_attention_rescale_backward(grad_in, feat_in, logits_in);
  const at::cuda::CUDAGuard guard(feat_in.device());
  const at::Tensor feat = to_supported_layout(feat_in);
  const Layout layout = layout_of(feat);
  const at::MemoryFormat fmt = memory_format_of(layout);
  // grad must share feat's memory layout; copy only when it does not already.
  const at::Tensor grad = grad_in.is_contiguous(fmt) ? grad_in : grad_in.contiguous(fmt);
  const at::Tensor logits = logits_in.contiguous();
  const int64_t B = feat.size(0), C = feat.size(1), H = feat.size(2), W = feat.size(3);
  const int64_t h = logits.size(2);
  at::Tensor grad_feat = at::empty(feat.sizes(), feat.options().memory_format(fmt));
  at::Tensor grad_logits = at::empty(logits.sizes(), logits.options());
  if (feat.numel() == 0) return {grad_feat, grad_logits};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, feat.scalar_type(), "hanet_attention_rescale_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int kV = vec_width<scalar_t>();
    const scalar_t* G = grad.const_data_ptr<scalar_t>();
    const scalar_t* F = feat.const_data_ptr<scalar_t>();
    const scalar_t* L = logits.const_data_ptr<scalar_t>();
    scalar_t* GF = grad_feat.mutable_data_ptr<scalar_t>();
    scalar_t* GL = grad_logits.mutable_data_ptr<scalar_t>();
    const bool aligned = aligned16(G) && aligned16(F) && aligned16(GF);
    const int64_t split_stride = B * C * H;
    at::Tensor gA;
    int64_t splits = 1;

    if (layout == Layout::NCHW) {
      gA = at::empty({split_stride}, feat.options().dtype(acc_dtype<acc_t>()));
      with_vec<kV>(W % kV == 0 && aligned, [&](auto vec) {
        constexpr int V = decltype(vec)::value;
        const int group = group_size(W / V);
        attention_backward_nchw_kernel<scalar_t, acc_t, V>
            <<<grid_for(ceil_div(split_stride, kBlock / group), kBlock), kBlock, 0, stream>>>(
                G, F, L, GF, gA.mutable_data_ptr<acc_t>(), split_stride, H, W, h, group);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    } else {
      with_vec<kV>(C % kV == 0 && aligned, [&](auto vec) {
        constexpr int V = decltype(vec)::value;
        const NhwcTiles tl = nhwc_tiles(C / V);
        const int threads = tl.tx * tl.ty;
        const int64_t base_tiles = B * H * tl.chunks;
        splits = width_splits(base_tiles, W, tl.ty, threads, 2);
        gA = at::empty({splits, split_stride}, feat.options().dtype(acc_dtype<acc_t>()));
        attention_backward_nhwc_kernel<scalar_t, acc_t, V>
            <<<grid_for(base_tiles * splits, threads), dim3(tl.tx, tl.ty), 0, stream>>>(
                G, F, L, GF, gA.mutable_data_ptr<acc_t>(), B, C, H, W, h, tl.chunks, splits);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    }

    const int64_t n = grad_logits.numel();
    attention_logits_grad_kernel<scalar_t, acc_t>
        <<<grid_for(ceil_div(n, kBlock), kBlock), kBlock, 0, stream>>>(
            gA.const_data_ptr<acc_t>(), L, GL, n, h, H, split_stride, splits);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_feat, grad_logits};
}

}  // namespace

// ============================================================================
// Registration
// ============================================================================

TORCH_LIBRARY_IMPL(hanet, CUDA, m) {
  m.impl("width_pool", &width_pool_cuda);
  m.impl("width_pool_backward", &width_pool_backward_cuda);
  m.impl("height_interp", &height_interp_cuda);
  m.impl("height_interp_backward", &height_interp_backward_cuda);
  m.impl("attention_rescale", &attention_rescale_cuda);
  m.impl("attention_rescale_backward", &attention_rescale_backward_cuda);
}

}  // namespace gpu
}  // namespace hanet
