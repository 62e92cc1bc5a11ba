// Device helpers and launch planning shared by the CUDA kernels (csrc/cuda/*.cu).
//
// Conventions of every kernel
//  * Index rules and per-element formulas come from hanet_math.h, which the CPU
//    kernels share, so the CPU tests exercise the same arithmetic.
//  * acc_t = at::opmath_type<scalar_t>: fp32 for float/half/bfloat16, fp64 for double.
//  * Global offsets are int64_t everywhere (tensors may exceed 2^31 elements).
//  * No 64-bit integer division by a runtime value in device code (it is a call, around
//    which ptxas spills registers to a stack frame): kernels take the divisors they need as
//    math::FastDivmod arguments built on the host (common/fast_divmod.h), and NHWC
//    tiles are decomposed by a TileGrid.  Short int64 loops with a runtime stride are
//    `#pragma unroll 1`: to unroll them nvcc computes the trip count by a 64-bit division.
//  * Deterministic: fixed-order per-thread loops, warp butterflies and shared-memory
//    trees; no atomics.  Every output element is written exactly once.
//  * No launch parameter that changes a reduction order depends on the GPU (SM count):
//    width splits come from the shape only, so every GPU model gives the same bits.
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
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "common/checks.h"
#include "common/fast_divmod.h"
#include "common/hanet_math.h"

namespace hanet {
namespace gpu {

using math::FastDivmod;

constexpr int kBlock = 256;     // threads per block (NHWC blocks may use fewer)
constexpr int kWarp = 32;
constexpr int kMaxTx = 64;      // NHWC: channel vectors per block row (threadIdx.x)
constexpr int kMinIters = 4;    // NHWC tiles: at least this many columns per thread
// Blocks' worth of threads a split reduction aims for: about 16 waves of a 132-SM
// H100, fixed so that the split (and so the summation order) is the same on every GPU.
constexpr int64_t kTargetThreads = int64_t(132) * 2048;

// The floating types every op takes, with the types every kernel body needs.
#define HANET_DISPATCH_FLOATING(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

// Every kernel is __launch_bounds__(kBlock, min_blocks<acc_t>()): room for 4 blocks of
// kBlock threads per SM (at most 64 registers a thread), or 3 (80 registers) when the
// arithmetic is fp64, two registers a value.  Without a minimum, ptxas trades a few
// registers for occupancy by spilling them to a stack frame (tests/test_cuda_build.py
// allows none); with these, every kernel fits its budget without spilling (checked on
// sm_80, sm_90 and sm_100: at 64 registers one fp64 kernel spilled on sm_100).
template <typename acc_t>
constexpr int min_blocks() {
  return sizeof(acc_t) > 4 ? 3 : 4;
}

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

// A vector of N copies of `a`, converted once.
template <int N, typename T, typename acc_t>
__device__ __forceinline__ Vec<T, N> splat(acc_t a) {
  Vec<T, N> v;
#pragma unroll
  for (int e = 0; e < N; ++e) v.v[e] = static_cast<T>(a);
  return v;
}

template <typename acc_t>
__device__ __forceinline__ acc_t neg_inf() {
  return -static_cast<acc_t>(INFINITY);
}

// The loads of a streaming loop issued K at a time: for j = first, first + step, ...
// below end, loads the vector at a + j * pitch (and b + j * pitch with kTwo) for K
// indices before calling use(j, va, vb) on each in j order (order-sensitive sums stay
// as in a plain loop).  One 16-byte load in flight per lane cannot cover DRAM latency;
// K independent ones can, where occupancy alone does not.
template <int K, int V, bool kTwo, typename scalar_t, typename F>
__device__ __forceinline__ void stream_vectors(int64_t first, int64_t end, int64_t step,
                                               const scalar_t* __restrict__ a,
                                               const scalar_t* __restrict__ b, int64_t pitch,
                                               F&& use) {
#pragma unroll 1  // no trip-count division (see the conventions above)
  for (int64_t j0 = first; j0 < end; j0 += K * step) {
    Vec<scalar_t, V> va[K], vb[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t j = j0 + k * step;
      if (j < end) {
        va[k] = load_vec<V>(a + j * pitch);
        if constexpr (kTwo) vb[k] = load_vec<V>(b + j * pitch);
      }
    }
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t j = j0 + k * step;
      if (j < end) use(j, va[k], vb[k]);
    }
  }
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

// Calls f(o) for o in [0, n), one index per thread of a grid-stride loop (not
// unrolled: see the conventions above).
template <typename F>
__device__ __forceinline__ void grid_stride(int64_t n, F&& f) {
#pragma unroll 1
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < n;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    f(o);
  }
}

// Coordinates of NHWC tile ((b * Y + y) * chunks + chunk) * splits + s, and this
// thread's channel vector cv (active: cv < the tensor's channel vectors).
struct TileCoord {
  int64_t b, y, chunk, s, cv;
  bool active;
};

// The B * Y * chunks * splits NHWC tiles of a launch, with the divisors that decompose
// a tile index (built on the host: NhwcLaunch::grid).
struct TileGrid {
  int64_t tiles;
  FastDivmod Y, chunks, splits;

  // First column of width split s (0 <= s <= splits) of W columns: s * W / splits.
  // nhwc_launch keeps splits below 2^14, so s * W stays below 2^63 for W < 2^49.
  __device__ __forceinline__ int64_t split_begin(int64_t s, int64_t W) const {
    return splits.quot(s * W);
  }
};

// Calls f(tile) for the NHWC tiles of this block (a block-stride loop over all
// g.tiles tiles); f returns to skip the rest of a tile.
template <typename F>
__device__ __forceinline__ void for_each_tile(const TileGrid& g, int64_t cvecs, F&& f) {
  for (int64_t tile = blockIdx.x; tile < g.tiles; tile += gridDim.x) {
    TileCoord c;
    int64_t t = 0;
    g.splits.divmod(tile, &t, &c.s);
    g.chunks.divmod(t, &t, &c.chunk);
    g.Y.divmod(t, &c.b, &c.y);
    c.cv = c.chunk * blockDim.x + threadIdx.x;
    c.active = c.cv < cvecs;
    f(static_cast<const TileCoord&>(c));
  }
}

// Fills s[e * TX + tx] (the layout the tile's threads read) with value(c) for the
// TX * V channels c_base + [0, TX * V) of an NHWC tile, 0 past C.
template <int V, typename acc_t, typename F>
__device__ __forceinline__ void stage_channels(acc_t* s, int64_t c_base, int64_t C, F&& value) {
  const int TX = blockDim.x;
  const int nthreads = TX * blockDim.y;
  for (int ch = threadIdx.y * TX + threadIdx.x; ch < TX * V; ch += nthreads) {
    const int64_t c = c_base + ch;
    s[(ch % V) * TX + ch / V] = c < C ? value(c) : acc_t(0);
  }
}

// Pairwise tree over threadIdx.y (blockDim.y a power of two) of each thread's V
// states: store(e, slot) writes state e to shared slot, merge(e, slot) folds the slot
// into state e.  Slots are [e][ty][tx]; the order is fixed, so it is deterministic.
template <int V, typename Store, typename Merge>
__device__ __forceinline__ void tree_over_y(Store&& store, Merge&& merge) {
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int TX = blockDim.x, TY = blockDim.y;
#pragma unroll
  for (int e = 0; e < V; ++e) store(e, (e * TY + ty) * TX + tx);
  __syncthreads();
  for (int off = TY >> 1; off > 0; off >>= 1) {
    if (ty < off) {
#pragma unroll
      for (int e = 0; e < V; ++e) {
        merge(e, (e * TY + ty + off) * TX + tx);
        store(e, (e * TY + ty) * TX + tx);
      }
    }
    __syncthreads();
  }
}

HANET_HOST int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// (A plain attribute query: ATen/cuda/CUDAContext.h would drag in the cuSPARSE/cuBLAS
// headers, which a bare CUDA toolkit install may lack.)
inline int sm_count() {
  int count = 0;
  C10_CUDA_CHECK(
      cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, c10::cuda::current_device()));
  return count;
}

// One wave of blocks (2048 resident threads per SM); kernels loop over the remaining
// work, so the grid never exceeds gridDim.x limits either.  Only which block takes
// which tile depends on it, never the arithmetic.
inline unsigned grid_for(int64_t blocks_needed, int threads_per_block) {
  const int64_t wave = static_cast<int64_t>(sm_count()) * (2048 / threads_per_block);
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(blocks_needed, wave)));
}

// Smallest power of two >= n, capped at a warp: the NCHW group size for n vectors.
inline int group_size(int64_t n) {
  int g = 1;
  while (g < kWarp && g < n) g <<= 1;
  return g;
}

// NCHW launch: groups of `group` lanes per row, kBlock threads per block.
struct NchwLaunch {
  int group;
  unsigned grid;
};

// Vectors a lane of a streaming NCHW kernel loads before it uses any (memory-level
// parallelism: one 16-byte load in flight per lane cannot cover DRAM latency at short
// rows, where a row gives each lane of a 32-lane group at most one vector).
constexpr int kNchwInFlight = 4;

// `per_lane`: the group just covers the row with that many vectors per lane (fewer,
// narrower groups: more rows per warp, and every lane busy where 32 lanes would idle).
inline NchwLaunch nchw_launch(int64_t nrows, int64_t vecs_per_row, int64_t per_lane = 1) {
  const int group = group_size(ceil_div(vecs_per_row, per_lane));
  return {group, grid_for(ceil_div(nrows, kBlock / group), kBlock)};
}

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// NHWC launch for `cvecs` channel vectors over `rows` tiles rows (B * H or B * bins)
// and W columns: balanced chunks of <= kMaxTx vectors along threadIdx.x, a power of
// two of columns along threadIdx.y, and the width split `splits` ways when there are
// few tiles (each split keeping >= kMinIters columns per thread).  `waves` scales the
// wanted parallelism.  Reductions combine the split partials in split order.
struct NhwcLaunch {
  int tx;
  int ty;
  int64_t chunks;
  int64_t splits;
  int threads() const { return tx * ty; }
  dim3 block() const { return dim3(tx, ty); }
  int64_t tiles(int64_t rows) const { return rows * chunks * splits; }
  // The tiles over B images of Y tile rows each (rows = B * Y).
  TileGrid grid(int64_t B, int64_t Y) const {
    return {tiles(B * Y), FastDivmod(Y), FastDivmod(chunks), FastDivmod(splits)};
  }
};

inline NhwcLaunch nhwc_launch(int64_t cvecs, int64_t rows, int64_t W, int waves) {
  NhwcLaunch t;
  t.chunks = ceil_div(cvecs, kMaxTx);
  t.tx = static_cast<int>(ceil_div(cvecs, t.chunks));
  t.ty = 1;
  while (2 * t.ty * t.tx <= kBlock) t.ty *= 2;
  const int64_t base = std::max<int64_t>(1, rows * t.chunks);
  const int64_t wanted = waves * ceil_div(kTargetThreads, t.threads());
  const int64_t max_splits = std::max<int64_t>(1, W / (static_cast<int64_t>(t.ty) * kMinIters));
  t.splits = std::clamp<int64_t>(ceil_div(wanted, base), 1, max_splits);
  return t;
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

// NCHW launch of a <V, kMax> kernel template: 16-byte vectors when `vectorised`,
// groups sized for vecs(V) vectors per row over n rows, per_lane of them per lane;
// launch(vec, flag, nl) launches.
template <int kV, typename VecsFn, typename LaunchFn>
void launch_nchw(bool vectorised, bool is_max, int64_t n, VecsFn&& vecs, LaunchFn&& launch,
                 int64_t per_lane = 1) {
  with_vec<kV>(vectorised, [&](auto vec) {
    const NchwLaunch nl = nchw_launch(n, vecs(decltype(vec)::value), per_lane);
    with_flag(is_max, [&](auto flag) {
      launch(vec, flag, nl);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

template <typename acc_t>
at::ScalarType acc_dtype() {
  return c10::CppTypeToScalarType<acc_t>::value;
}

}  // namespace gpu
}  // namespace hanet
