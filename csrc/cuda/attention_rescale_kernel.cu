// CUDA kernels of hanet::attention_rescale (out = feat * A[b, c, y],
// A = interp(sigmoid(logits), H)) and its fused backward:
//   grad_feat   = grad * A
//   gA[b, c, y] = sum_w grad * feat                      (acc_t buffer, S width splits)
//   grad_logits = interp_backward(gA, h) * s * (1 - s),  s = sigmoid(logits)
// With feat_is_output the backward streams the forward's output (feat * A) in feat's
// place and divides each row sum by A (math::feat_dot_from_result), so autograd need
// not keep feat.  With attention_grad the row sums are the answer (the gradient of A,
// for a caller that differentiates sigmoid and interpolation itself): the streaming
// pass stores them in the output's dtype, and NCHW's backward is that one kernel.
// The forward and the first backward pass share one streaming body per layout
// (kBackward picks the extra read and the dot product).  Conventions:
// csrc/common/cuda_helpers.cuh.
#include <tuple>
#include <type_traits>

#include "common/cuda_helpers.cuh"
#include "contract.h"

namespace hanet {
namespace gpu {
namespace {

// One vector of the stream, already loaded (g = in, f = feat): out = g * A, and for the
// backward dot += g * f.  NHWC: A and dot per element (channel); with kRowDot (NCHW) one
// A and one running sum for the whole row, in order.
template <bool kBackward, bool kRowDot, int V, typename scalar_t, typename acc_t>
__device__ __forceinline__ void rescale_values(const Vec<scalar_t, V>& g, const Vec<scalar_t, V>& f,
                                               scalar_t* __restrict__ out, const acc_t* A,
                                               acc_t* dot) {
  Vec<scalar_t, V> o;
#pragma unroll
  for (int e = 0; e < V; ++e) {
    const acc_t ge = static_cast<acc_t>(g.v[e]);
    o.v[e] = static_cast<scalar_t>(ge * A[kRowDot ? 0 : e]);
    if constexpr (kBackward) dot[kRowDot ? 0 : e] += ge * static_cast<acc_t>(f.v[e]);
  }
  store_vec<V>(out, o);
}

// Vectors a thread loads before using any (stream_vectors): forward one tensor, backward
// two (the same 16-byte loads in flight).  Half types widen each vector to 8 fp32
// registers: half as many, or ptxas spills at the 64-register budget.
template <typename scalar_t>
constexpr int rescale_in_flight(bool backward) {
  return (backward ? kNchwInFlight / 2 : kNchwInFlight) / (sizeof(scalar_t) == 2 ? 2 : 1);
}

// NCHW: one group per image row (b, c, y); A is computed once per row (per lane).
// Forward: in = feat.  Backward: in = grad, and the row's dot product with feat is
// reduced across the group (fixed butterfly order) into gA[r] (gA_t: acc_t for the
// logits gradient's gather, scalar_t when the row sums are the op's output).  Each lane
// issues the loads of up to K of its row's vectors before using any (the group is sized
// for that: nchw_launch's per_lane), so short rows overlap loads too; the backward loads
// two tensors, so half as many vectors give it as many loads in flight.
template <typename scalar_t, typename acc_t, typename gA_t, int V, bool kBackward>
__global__ void __launch_bounds__(kBlock, min_blocks<acc_t>())
    rescale_nchw_kernel(const scalar_t* __restrict__ in, const scalar_t* __restrict__ feat,
                        const scalar_t* __restrict__ logits, scalar_t* __restrict__ out,
                        gA_t* __restrict__ gA, int64_t nrows, FastDivmod H, int64_t W, int64_t h,
                        int G, bool feat_is_output) {
  constexpr int K = rescale_in_flight<scalar_t>(kBackward);
  const GroupRows gr(G);
  const int64_t vecs = W / V;
  for (int64_t base = gr.first; base < nrows; base += gr.step) {
    const int64_t r = base + gr.slot;
    const bool valid = r < nrows;
    acc_t dot[1] = {0};
    acc_t a_row = 0;
    if (valid) {
      int64_t p = 0, y = 0;
      H.divmod(r, &p, &y);
      a_row = math::interp_sigmoid<acc_t>(logits + p * h, y, h, H.divisor());
      const int64_t off = r * W;
      stream_vectors<K, V, kBackward>(
          gr.g_lane, vecs, G, in + off, feat + off, V, [&](int64_t j, const auto& g, const auto& f) {
            rescale_values<kBackward, true, V>(g, f, out + off + j * V, &a_row, dot);
          });
    }
    if constexpr (kBackward) {
      const acc_t sum = group_sum(dot[0], G);  // whole warp, outside the `valid` branch
      if (valid && gr.g_lane == 0)
        gA[r] = static_cast<gA_t>(feat_is_output ? math::feat_dot_from_result(sum, a_row) : sum);
    }
  }
}

// NHWC: tile = (b, y, channel chunk, width split s); A is staged once per tile in shared
// memory, threadIdx.x along channels, threadIdx.y striding the split's columns.  The
// backward merges its per-channel dot products over threadIdx.y by a shared-memory
// tree and stores them to gA split s (no atomics; the splits are summed in order later).
template <typename scalar_t, typename acc_t, typename gA_t, int V, bool kBackward>
__global__ void __launch_bounds__(kBlock, min_blocks<acc_t>())
    rescale_nhwc_kernel(const scalar_t* __restrict__ in, const scalar_t* __restrict__ feat,
                        const scalar_t* __restrict__ logits, scalar_t* __restrict__ out,
                        gA_t* __restrict__ gA, int64_t B, int64_t C, int64_t H, int64_t W,
                        int64_t h, TileGrid grid, bool feat_is_output) {
  __shared__ acc_t s_a[kMaxTx * V];
  __shared__ acc_t s_red[kBackward ? kBlock * V : 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int TX = blockDim.x, TY = blockDim.y;
  for_each_tile(grid, C / V, [&](const TileCoord& tc) {
    const int64_t cv = tc.cv;
    const bool active = tc.active;
    __syncthreads();  // the previous tile is done with s_a and s_red
    stage_channels<V>(s_a, tc.chunk * TX * V, C, [&](int64_t c) {
      return math::interp_sigmoid<acc_t>(logits + (tc.b * C + c) * h, tc.y, h, H);
    });
    __syncthreads();

    acc_t dot[V] = {};
    if (active) {
      acc_t A[V];
#pragma unroll
      for (int e = 0; e < V; ++e) A[e] = s_a[e * TX + tx];
      const int64_t off = ((tc.b * H + tc.y) * W) * C + cv * V;
      stream_vectors<rescale_in_flight<scalar_t>(kBackward), V, kBackward>(
          grid.split_begin(tc.s, W) + ty, grid.split_begin(tc.s + 1, W), TY, in + off, feat + off, C,
          [&](int64_t w, const auto& g, const auto& f) {
            rescale_values<kBackward, false, V>(g, f, out + off + w * C, A, dot);
          });
    }
    if constexpr (kBackward) {
      tree_over_y<V>([&](int e, int slot) { s_red[slot] = dot[e]; },
                     [&](int e, int slot) { dot[e] += s_red[slot]; });
      if (ty == 0 && active) {
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const acc_t a = s_a[e * TX + tx];
          gA[(tc.s * B * C + tc.b * C + cv * V + e) * H + tc.y] = static_cast<gA_t>(
              feat_is_output ? math::feat_dot_from_result(dot[e], a) : dot[e]);
        }
      }
    }
  });
}

// One thread per logit (b, c, j): gathers gA (summing the width splits in order) over
// the rows that read j, then applies the sigmoid derivative.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlock, min_blocks<acc_t>())
    attention_logits_grad_kernel(const acc_t* __restrict__ gA, const scalar_t* __restrict__ logits,
                                 scalar_t* __restrict__ grad_logits, int64_t n, FastDivmod h_div,
                                 int64_t H, int64_t split_stride, int64_t splits) {
  const int64_t h = h_div.divisor();
  grid_stride(n, [&](int64_t o) {
    int64_t p = 0, j = 0;
    h_div.divmod(o, &p, &j);
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
  });
}

// attention_grad with width splits: the gradient of A is the in-order sum of the splits.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlock, min_blocks<acc_t>())
    split_sums_kernel(const acc_t* __restrict__ gA, scalar_t* __restrict__ grad_attention,
                      int64_t n, int64_t splits) {
  grid_stride(n, [&](int64_t o) {
    acc_t g = gA[o];
    for (int64_t s = 1; s < splits; ++s) g += gA[s * n + o];
    grad_attention[o] = static_cast<scalar_t>(g);
  });
}

// The streaming pass of either direction over feat's layout: out = in * A (and, for the
// backward, the per-row dot products of in and feat: into `direct` (B*C*H, feat's dtype)
// when given and the layout needs no width splits, else into *gA, `*splits` acc_t
// partials per row).  Returns whether the row sums went to `direct`.
template <bool kBackward>
bool rescale_stream(const at::Tensor& in, const at::Tensor& feat, const at::Tensor& logits,
                    at::Tensor& out, at::Tensor* gA, int64_t* splits, bool feat_is_output,
                    at::Tensor* direct = nullptr) {
  const int64_t B = feat.size(0), C = feat.size(1), H = feat.size(2), W = feat.size(3);
  const int64_t h = logits.size(2);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  bool wrote_direct = false;
  HANET_DISPATCH_FLOATING(feat.scalar_type(), "hanet_attention_rescale_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int kV = vec_width<scalar_t>();
    const scalar_t* I = in.const_data_ptr<scalar_t>();
    const scalar_t* F = feat.const_data_ptr<scalar_t>();
    const scalar_t* L = logits.const_data_ptr<scalar_t>();
    scalar_t* O = out.mutable_data_ptr<scalar_t>();
    const bool aligned = aligned16(I) && aligned16(F) && aligned16(O);
    const auto acc_opts = feat.options().dtype(acc_dtype<acc_t>());
    // the row sums' destination: the op's output, or an acc_t buffer
    const auto launch_with_sums = [&](bool to_direct, auto&& launch) {
      if constexpr (kBackward) {
        if (to_direct) {
          wrote_direct = true;
          launch(direct->mutable_data_ptr<scalar_t>());
        } else {
          launch(gA->mutable_data_ptr<acc_t>());
        }
      } else {
        launch(static_cast<acc_t*>(nullptr));
      }
    };
    if (layout_of(feat) == Layout::NCHW) {
      if (kBackward && direct == nullptr) *gA = at::empty({B * C * H}, acc_opts);
      with_vec<kV>(W % kV == 0 && aligned, [&](auto vec) {
        constexpr int V = decltype(vec)::value;
        const NchwLaunch nl = nchw_launch(B * C * H, W / V, rescale_in_flight<scalar_t>(kBackward));
        launch_with_sums(direct != nullptr, [&](auto* GA) {
          using gA_t = std::remove_pointer_t<decltype(GA)>;
          rescale_nchw_kernel<scalar_t, acc_t, gA_t, V, kBackward>
              <<<nl.grid, kBlock, 0, stream>>>(I, F, L, O, GA, B * C * H, FastDivmod(H), W, h,
                                                nl.group, feat_is_output);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
      return;
    }
    with_vec<kV>(C % kV == 0 && aligned, [&](auto vec) {
      constexpr int V = decltype(vec)::value;
      const NhwcLaunch tl = nhwc_launch(C / V, B * H, W, kBackward ? 2 : 4);
      const bool to_direct = direct != nullptr && tl.splits == 1;
      if (kBackward) {
        *splits = tl.splits;
        if (!to_direct) *gA = at::empty({tl.splits, B * C * H}, acc_opts);
      }
      launch_with_sums(to_direct, [&](auto* GA) {
        using gA_t = std::remove_pointer_t<decltype(GA)>;
        rescale_nhwc_kernel<scalar_t, acc_t, gA_t, V, kBackward>
            <<<grid_for(tl.tiles(B * H), tl.threads()), tl.block(), 0, stream>>>(
                I, F, L, O, GA, B, C, H, W, h, tl.grid(B, H), feat_is_output);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  });
  return wrote_direct;
}

}  // namespace

at::Tensor attention_rescale(const at::Tensor& feat_in, const at::Tensor& logits_in) {
  check_attention_rescale(feat_in, logits_in);
  const at::cuda::CUDAGuard guard(feat_in.device());
  const at::Tensor feat = to_supported_layout(feat_in);
  const at::Tensor logits = logits_in.contiguous();
  at::Tensor out =
      at::empty(feat.sizes(), feat.options().memory_format(memory_format_of(layout_of(feat))));
  if (out.numel() == 0) return out;
  rescale_stream<false>(feat, feat, logits, out, nullptr, nullptr, false);
  return out;
}

std::tuple<at::Tensor, at::Tensor> attention_rescale_backward(const at::Tensor& grad_in,
                                                              const at::Tensor& feat_in,
                                                              const at::Tensor& logits_in,
                                                              bool feat_is_output,
                                                              bool attention_grad) {
  check_attention_rescale_backward(grad_in, feat_in, logits_in);
  const at::cuda::CUDAGuard guard(feat_in.device());
  const at::Tensor feat = to_supported_layout(feat_in);
  const at::MemoryFormat fmt = memory_format_of(layout_of(feat));
  // grad must share feat's memory layout; copy only when it does not already.
  const at::Tensor grad = grad_in.is_contiguous(fmt) ? grad_in : grad_in.contiguous(fmt);
  const at::Tensor logits = logits_in.contiguous();
  at::Tensor grad_feat = at::empty(feat.sizes(), feat.options().memory_format(fmt));
  const int64_t B = feat.size(0), C = feat.size(1), H = feat.size(2);
  // attention_grad: the gradient of A (B, C, H); else the logits' (B, C, h)
  at::Tensor grad_second = attention_grad ? at::empty({B, C, H}, logits.options())
                                          : at::empty(logits.sizes(), logits.options());
  if (feat.numel() == 0) return {grad_feat, grad_second};
  at::Tensor gA;
  int64_t splits = 1;
  if (rescale_stream<true>(grad, feat, logits, grad_feat, &gA, &splits, feat_is_output,
                           attention_grad ? &grad_second : nullptr)) {
    return {grad_feat, grad_second};
  }

  const int64_t n = grad_second.numel(), h = logits.size(2);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  HANET_DISPATCH_FLOATING(feat.scalar_type(), "hanet_attention_logits_grad_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const dim3 grid = grid_for(ceil_div(n, kBlock), kBlock);
    if (attention_grad) {
      split_sums_kernel<scalar_t, acc_t><<<grid, kBlock, 0, stream>>>(
          gA.const_data_ptr<acc_t>(), grad_second.mutable_data_ptr<scalar_t>(), n, splits);
    } else {
      attention_logits_grad_kernel<scalar_t, acc_t><<<grid, kBlock, 0, stream>>>(
          gA.const_data_ptr<acc_t>(), logits.const_data_ptr<scalar_t>(),
          grad_second.mutable_data_ptr<scalar_t>(), n, FastDivmod(h), H, gA.numel() / splits,
          splits);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_feat, grad_second};
}

}  // namespace gpu
}  // namespace hanet
