#include "common/checks.h"

#include <c10/util/Exception.h>

namespace hanet {

bool has_supported_layout(const at::Tensor& x) {
  return x.is_contiguous() ||
         (x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast));
}

Layout layout_of(const at::Tensor& x) {
  if (x.is_contiguous()) return Layout::NCHW;
  TORCH_INTERNAL_ASSERT(x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast));
  return Layout::NHWC;
}

at::Tensor to_supported_layout(const at::Tensor& x) {
  return has_supported_layout(x) ? x : x.contiguous();
}

at::MemoryFormat memory_format_of(Layout layout) {
  return layout == Layout::NHWC ? at::MemoryFormat::ChannelsLast
                                : at::MemoryFormat::Contiguous;
}

void check_floating(const char* op, const char* name, const at::Tensor& t) {
  const auto st = t.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kHalf || st == at::kBFloat16 || st == at::kDouble,
              op, ": ", name, " must be a float32, float16, bfloat16 or float64 tensor, got ",
              st);
}

void check_defined(const char* op, const char* name, const at::Tensor& t) {
  // None binds to an undefined tensor
  TORCH_CHECK(t.defined(), op, ": ", name, " must be a tensor, got None");
}

void check_dim(const char* op, const char* name, const at::Tensor& t, int64_t dim,
               const char* shape) {
  check_defined(op, name, t);
  TORCH_CHECK(t.dim() == dim, op, ": ", name, " must be a ", dim, "-D tensor ", shape,
              ", got a ", t.dim(), "-D tensor of shape ", t.sizes());
}

void check_nonempty(const char* op, const char* name, const at::Tensor& t) {
  for (int64_t d = 1; d < t.dim(); ++d) {
    TORCH_CHECK(t.size(d) >= 1, op, ": ", name, " is empty (shape ", t.sizes(),
                "); every dimension but the batch must be at least 1");
  }
}

void check_same_device_dtype(const char* op, const char* name_a, const at::Tensor& a,
                             const char* name_b, const at::Tensor& b) {
  TORCH_CHECK(a.device() == b.device(), op, ": ", name_a, " and ", name_b,
              " must be on the same device, got ", a.device(), " and ", b.device());
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), op, ": ", name_a, " and ", name_b,
              " must have the same dtype, got ", a.scalar_type(), " and ", b.scalar_type());
}

bool parse_pool_mode(const char* op, c10::string_view mode) {
  TORCH_CHECK(mode == "mean" || mode == "max", op, ": mode must be \"mean\" or \"max\", got \"",
              std::string(mode), "\"");
  return mode == "max";
}

}  // namespace hanet
