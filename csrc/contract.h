// The C++ side of the op contract: the mirror of hanet/ops/contract.py.  One entry per
// op (forward and backward): its schema, its kernel's signature (defined by every
// backend: hanet::cpu in cpu/<op>_cpu.cpp, hanet::gpu in cuda/<op>_kernel.cu) and its
// argument check, which both kernels call first.  registration.cpp registers them all.
// tests/ops/test_contract.py asserts that these checks and the Python contract reject
// exactly the same calls.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <tuple>

#include "common/checks.h"

// X(name, schema) for every op.
#define HANET_SCHEMAS(X)                                                                      \
  /* (B, C, H, W) -> (B, C, rows) and, for mode="max", the arg-max flat index h*W+w */       \
  /* (an empty int64 tensor for mode="mean") */                                             \
  X(width_pool, "width_pool(Tensor x, SymInt rows, str mode=\"mean\") -> (Tensor, Tensor)")  \
  X(width_pool_backward,                                                                      \
    "width_pool_backward(Tensor grad, Tensor indices, SymInt height, SymInt width, str mode, " \
    "bool channels_last) -> Tensor")                                                          \
  /* (B, C, h) -> (B, C, size), linear, align_corners=False */                               \
  X(height_interp, "height_interp(Tensor a, SymInt size) -> Tensor")                          \
  X(height_interp_backward, "height_interp_backward(Tensor grad, SymInt in_size) -> Tensor") \
  /* feat * interp(sigmoid(logits), H)[..., None]; the backward takes the output in */     \
  /* feat's place when feat_is_output (then feat itself need not be kept), and with */     \
  /* attention_grad returns the gradient of A = interp(sigmoid(logits)), (B, C, H), */      \
  /* in the logits' place (a captured graph differentiates A itself) */                    \
  X(attention_rescale, "attention_rescale(Tensor feat, Tensor logits) -> Tensor")             \
  X(attention_rescale_backward,                                                               \
    "attention_rescale_backward(Tensor grad, Tensor feat, Tensor logits, bool feat_is_output=False, " \
    "bool attention_grad=False) -> (Tensor, Tensor)")

// The kernel signatures, declared in each backend's namespace.
#define HANET_KERNEL_DECLARATIONS                                                            \
  std::tuple<at::Tensor, at::Tensor> width_pool(const at::Tensor& x, int64_t rows,           \
                                                c10::string_view mode);                      \
  at::Tensor width_pool_backward(const at::Tensor& grad, const at::Tensor& indices,          \
                                 int64_t height, int64_t width, c10::string_view mode,       \
                                 bool channels_last);                                        \
  at::Tensor height_interp(const at::Tensor& a, int64_t size);                               \
  at::Tensor height_interp_backward(const at::Tensor& grad, int64_t in_size);                \
  at::Tensor attention_rescale(const at::Tensor& feat, const at::Tensor& logits);            \
  std::tuple<at::Tensor, at::Tensor> attention_rescale_backward(                             \
      const at::Tensor& grad, const at::Tensor& feat, const at::Tensor& logits,             \
      bool feat_is_output, bool attention_grad);

namespace hanet {
namespace cpu {
HANET_KERNEL_DECLARATIONS
}  // namespace cpu
namespace gpu {
HANET_KERNEL_DECLARATIONS
}  // namespace gpu

// ---- argument checks: each raises a c10::Error naming the op, the argument and the
// problem (the rules of hanet/ops/contract.py, in the same order) ----


inline void check_width_pool(const at::Tensor& x, int64_t rows, c10::string_view mode) {
  const char* op = "hanet.width_pool";
  check_dim(op, "x", x, 4, "(B, C, H, W)");
  check_floating(op, "x", x);
  check_nonempty(op, "x", x);
  TORCH_CHECK(rows >= 1, op, ": rows must be >= 1, got ", rows);
  parse_pool_mode(op, mode);
}

inline void check_width_pool_backward(const at::Tensor& grad, const at::Tensor& indices,
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

// Both directions of height_interp: a (B, C, n) tensor and a target length >= 1.
static inline void check_rows_and_length(const char* op, const char* name, const at::Tensor& t,
                                  const char* shape, const char* len_name, int64_t len) {
  check_dim(op, name, t, 3, shape);
  check_floating(op, name, t);
  check_nonempty(op, name, t);
  TORCH_CHECK(len >= 1, op, ": ", len_name, " must be >= 1, got ", len);
}

inline void check_height_interp(const at::Tensor& a, int64_t size) {
  check_rows_and_length("hanet.height_interp", "a", a, "(B, C, h)", "size", size);
}

inline void check_height_interp_backward(const at::Tensor& grad, int64_t in_size) {
  check_rows_and_length("hanet.height_interp_backward", "grad", grad, "(B, C, size)", "in_size",
                        in_size);
}

inline void check_attention_rescale(const at::Tensor& feat, const at::Tensor& logits) {
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

inline void check_attention_rescale_backward(const at::Tensor& grad, const at::Tensor& feat,
                                      const at::Tensor& logits) {
  const char* op = "hanet.attention_rescale_backward";
  check_attention_rescale(feat, logits);
  check_defined(op, "grad", grad);
  check_same_device_dtype(op, "grad", grad, "feat", feat);
  TORCH_CHECK(grad.sizes() == feat.sizes(), op, ": grad shape ", grad.sizes(),
              " must equal feat shape ", feat.sizes());
}

}  // namespace hanet
