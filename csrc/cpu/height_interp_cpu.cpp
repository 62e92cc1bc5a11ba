// CPU kernels of hanet::height_interp (linear, align_corners=False) and its adjoint.
// These tensors are small ((B, C, h) attention rows): plain loops over rows.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../checks.h"
#include "../hanet_math.h"
#include "vec_io.h"

namespace hanet {
namespace cpu {
namespace {

at::Tensor height_interp_cpu(const at::Tensor& a_in, int64_t size) {
  check_height_interp(a_in, size);
  const at::Tensor a = a_in.contiguous();
  const int64_t rows = a.size(0) * a.size(1), h = a.size(2);
  at::Tensor out = at::empty({a.size(0), a.size(1), size}, a.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "hanet_height_interp_cpu", [&] {
    using acc = acc_t<scalar_t>;
    std::vector<math::LinearTap<acc>> taps(size);
    for (int64_t i = 0; i < size; ++i) taps[i] = math::linear_tap<acc>(i, h, size);
    const scalar_t* A = a.const_data_ptr<scalar_t>();
    scalar_t* O = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain_for(size, 4096), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const scalar_t* src = A + r * h;
        for (int64_t i = 0; i < size; ++i) {
          const auto& t = taps[i];
          O[r * size + i] = static_cast<scalar_t>(t.w0 * static_cast<acc>(src[t.i0]) +
                                                  t.w1 * static_cast<acc>(src[t.i1]));
        }
      }
    });
  });
  return out;
}

at::Tensor height_interp_backward_cpu(const at::Tensor& grad_in, int64_t in_size) {
  check_height_interp_backward(grad_in, in_size);
  const at::Tensor grad = grad_in.contiguous();
  const int64_t rows = grad.size(0) * grad.size(1), size = grad.size(2);
  at::Tensor out = at::empty({grad.size(0), grad.size(1), in_size}, grad.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "hanet_height_interp_backward_cpu", [&] {
    using acc = acc_t<scalar_t>;
    const scalar_t* G = grad.const_data_ptr<scalar_t>();
    scalar_t* O = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain_for(size, 4096), [&](int64_t begin, int64_t end) {
      std::vector<acc> scratch(in_size);
      for (int64_t r = begin; r < end; ++r) {
        math::linear_backward_row<acc>(G + r * size, size, scratch.data(), in_size);
        store_row<scalar_t>(scratch.data(), O + r * in_size, in_size);
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(hanet, CPU, m) {
  m.impl("height_interp", &height_interp_cpu);
  m.impl("height_interp_backward", &height_interp_backward_cpu);
}

}  // namespace cpu
}  // namespace hanet
