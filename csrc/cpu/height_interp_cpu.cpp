// CPU kernels of hanet::height_interp (linear, align_corners=False) and its adjoint.
// These tensors are small ((B, C, h) attention rows): plain loops over rows.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>

#include "common/hanet_math.h"
#include "contract.h"
#include "vec_io.h"

namespace hanet {
namespace cpu {
namespace {

// (B, C, src_len) -> (B, C, out_len), one parallel task per block of rows:
// row(src_row, out_row) fills one output row.
template <typename RowFn>
at::Tensor per_row(const at::Tensor& src_in, int64_t out_len, RowFn&& row) {
  const at::Tensor src = src_in.contiguous();
  const int64_t rows = src.size(0) * src.size(1), src_len = src.size(2);
  at::Tensor out = at::empty({src.size(0), src.size(1), out_len}, src.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "hanet_height_interp_cpu", [&] {
    const scalar_t* S = src.const_data_ptr<scalar_t>();
    scalar_t* O = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain_for(std::max(src_len, out_len), 4096), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) row(S + r * src_len, src_len, O + r * out_len, out_len);
    });
  });
  return out;
}

}  // namespace

at::Tensor height_interp(const at::Tensor& a, int64_t size) {
  check_height_interp(a, size);
  return per_row(a, size, [](const auto* src, int64_t h, auto* dst, int64_t n) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(src)>>;
    using acc = acc_t<T>;
    for (int64_t i = 0; i < n; ++i) {
      const auto t = math::linear_tap<acc>(i, h, n);
      dst[i] = static_cast<T>(t.w0 * static_cast<acc>(src[t.i0]) + t.w1 * static_cast<acc>(src[t.i1]));
    }
  });
}

at::Tensor height_interp_backward(const at::Tensor& grad, int64_t in_size) {
  check_height_interp_backward(grad, in_size);
  return per_row(grad, in_size, [](const auto* src, int64_t size, auto* dst, int64_t n) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(src)>>;
    // gather form of the adjoint (the terms the scatter adds, in the same order)
    for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<T>(math::linear_backward_at<acc_t<T>>(src, size, j, n));
  });
}

}  // namespace cpu
}  // namespace hanet
