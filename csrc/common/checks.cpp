#include "checks.h"

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
  TORCH_CHECK(t.numel() > 0, op, ": ", name, " is empty (shape ", t.sizes(),
              "); every dimension must be at least 1");
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

void check_width_pool(const at::Tensor& x, int64_t rows, c10::string_view mode) {
  const char* op = "hanet.width_pool";
  check_dim(op, "x", x, 4, "(B, C, H, W)");
  check_floating(op, "x", x);
  check_nonempty(op, "x", x);
  TORCH_CHECK(rows >= 1, op, ": rows must be >= 1, got ", rows);
  parse_pool_mode(op, mode);
}

void check_width_pool_backward(const at::Tensor& grad, const at::Tensor& indices,
                               int64_t height, int64_t width, c10::string_view mode) {
  const char* op = "hanet.width_pool_backward";
  check_dim(op, "grad", grad, 3, "(B, C, rows)");
  check_floating(op, "grad", grad);
  check_nonempty(op, "grad", grad);
  TORCH_CHECK(height >= 1 && width >= 1, op, ": height and width must be >= 1, got ", height,
              " and ", width);
  // Checked in both modes: mean mode ignores indices, but a tensor on another device
  // would route the call to that device's kernel.
  check_defined(op, "indices", indices);
  TORCH_CHECK(indices.device() == grad.device(), op,
              ": indices and grad must be on the same device, got ", indices.device(), " and ",
              grad.device());
  if (parse_pool_mode(op, mode)) {
    TORCH_CHECK(indices.scalar_type() == at::kLong, op, ": indices must be int64, got ",
                indices.scalar_type());
    TORCH_CHECK(indices.sizes() == grad.sizes(), op, ": indices shape ", indices.sizes(),
                " must equal grad shape ", grad.sizes());
  }
}

void check_height_interp(const at::Tensor& a, int64_t size) {
  const char* op = "hanet.height_interp";
  check_dim(op, "a", a, 3, "(B, C, h)");
  check_floating(op, "a", a);
  check_nonempty(op, "a", a);
  TORCH_CHECK(size >= 1, op, ": size must be >= 1, got ", size);
}

void check_height_interp_backward(const at::Tensor& grad, int64_t in_size) {
  const char* op = "hanet.height_interp_backward";
  check_dim(op, "grad", grad, 3, "(B, C, size)");
  check_floating(op, "grad", grad);
  check_nonempty(op, "grad", grad);
  TORCH_CHECK(in_size >= 1, op, ": in_size must be >= 1, got ", in_size);
}

void check_attention_rescale(const at::Tensor& feat, const at::Tensor& logits) {
  const char* op = "hanet.attention_rescale";
  check_dim(op, "feat", feat, 4, "(B, C, H, W)");
  check_dim(op, "logits", logits, 3, "(B, C, h)");
  check_floating(op, "feat", feat);
  check_same_device_dtype(op, "feat", feat, "logits", logits);
  check_nonempty(op, "feat", feat);
  check_nonempty(op, "logits", logits);
  TORCH_CHECK(feat.size(0) == logits.size(0), op, ": batch mismatch: feat has ", feat.size(0),
              " images, logits has ", logits.size(0));
  TORCH_CHECK(feat.size(1) == logits.size(1), op, ": channel mismatch: feat has ",
              feat.size(1), " channels, logits has ", logits.size(1));
}

void check_attention_rescale_backward(const at::Tensor& grad, const at::Tensor& feat,
                                      const at::Tensor& logits) {
  const char* op = "hanet.attention_rescale_backward";
  check_attention_rescale(feat, logits);
  check_defined(op, "grad", grad);
  check_same_device_dtype(op, "grad", grad, "feat", feat);
  TORCH_CHECK(grad.sizes() == feat.sizes(), op, ": grad shape ", grad.sizes(),
              " must equal feat shape ", feat.sizes());
}

}  // namespace hanet
