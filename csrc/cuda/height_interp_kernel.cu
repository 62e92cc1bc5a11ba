// CUDA kernels of hanet::height_interp ((B, C, h) -> (B, C, size), linear,
// align_corners=False) and its adjoint.  These tensors are small: one thread per
// output element, both kernels reading rows of src_len and writing rows of out_len.
// Conventions: csrc/common/cuda_helpers.cuh.
#include "common/cuda_helpers.cuh"
#include "contract.h"

namespace hanet {
namespace gpu {
namespace {

// Consecutive threads read neighbouring taps.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlock, min_blocks<acc_t>())
    height_interp_kernel(const scalar_t* __restrict__ a, scalar_t* __restrict__ out, int64_t n,
                         int64_t in_size, FastDivmod size) {
  grid_stride(n, [&](int64_t o) {
    int64_t p = 0, d = 0;
    size.divmod(o, &p, &d);
    const math::LinearTap<acc_t> t = math::linear_tap<acc_t>(d, in_size, size.divisor());
    const scalar_t* src = a + p * in_size;
    out[o] = static_cast<scalar_t>(t.w0 * static_cast<acc_t>(src[t.i0]) +
                                   t.w1 * static_cast<acc_t>(src[t.i1]));
  });
}

// One thread per input element gathers the outputs that read it (math::linear_backward_at:
// a binary search on the forward taps, then the same terms the scatter adds, in order).
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlock, min_blocks<acc_t>())
    height_interp_backward_kernel(const scalar_t* __restrict__ grad, scalar_t* __restrict__ out,
                                  int64_t n, int64_t size, FastDivmod in_size) {
  grid_stride(n, [&](int64_t o) {
    int64_t p = 0, j = 0;
    in_size.divmod(o, &p, &j);
    out[o] = static_cast<scalar_t>(
        math::linear_backward_at<acc_t>(grad + p * size, size, j, in_size.divisor()));
  });
}

// (B, C, src_len) -> (B, C, out_len) by the forward kernel or its adjoint.
at::Tensor resample_rows(const at::Tensor& src_in, int64_t out_len, bool adjoint) {
  const at::cuda::CUDAGuard guard(src_in.device());
  const at::Tensor src = src_in.contiguous();
  const int64_t src_len = src.size(2);
  at::Tensor out = at::empty({src.size(0), src.size(1), out_len}, src.options());
  const int64_t n = out.numel();
  if (n == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  HANET_DISPATCH_FLOATING(src.scalar_type(), "hanet_height_interp_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto* kernel = adjoint ? &height_interp_backward_kernel<scalar_t, acc_t>
                           : &height_interp_kernel<scalar_t, acc_t>;
    kernel<<<grid_for(ceil_div(n, kBlock), kBlock), kBlock, 0, stream>>>(
        src.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n, src_len,
        FastDivmod(out_len));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

at::Tensor height_interp(const at::Tensor& a, int64_t size) {
  check_height_interp(a, size);
  return resample_rows(a, size, false);
}

at::Tensor height_interp_backward(const at::Tensor& grad, int64_t in_size) {
  check_height_interp_backward(grad, in_size);
  return resample_rows(grad, in_size, true);
}

}  // namespace gpu
}  // namespace hanet
