// Argument checks and layout helpers shared by the CPU and CUDA kernels.
// Every failure is a c10::Error (RuntimeError in Python) whose message names the
// op, the argument and what is wrong with it.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace hanet {

enum class Layout { NCHW, NHWC };

// NCHW if contiguous, NHWC if channels_last-contiguous (NCHW wins when both hold).
// Anything else is not a supported layout: call `to_supported_layout` first.
bool has_supported_layout(const at::Tensor& x);
Layout layout_of(const at::Tensor& x);
// Returns x unchanged when its layout is supported, else a contiguous copy.
at::Tensor to_supported_layout(const at::Tensor& x);
at::MemoryFormat memory_format_of(Layout layout);

void check_defined(const char* op, const char* name, const at::Tensor& t);
void check_floating(const char* op, const char* name, const at::Tensor& t);
void check_dim(const char* op, const char* name, const at::Tensor& t, int64_t dim,
               const char* shape);
void check_nonempty(const char* op, const char* name, const at::Tensor& t);
void check_same_device_dtype(const char* op, const char* name_a, const at::Tensor& a,
                             const char* name_b, const at::Tensor& b);
bool parse_pool_mode(const char* op, c10::string_view mode);  // true = max

void check_width_pool(const at::Tensor& x, int64_t rows, c10::string_view mode);
void check_width_pool_backward(const at::Tensor& grad, const at::Tensor& indices,
                               int64_t height, int64_t width, c10::string_view mode);
void check_height_interp(const at::Tensor& a, int64_t size);
void check_height_interp_backward(const at::Tensor& grad, int64_t in_size);
void check_attention_rescale(const at::Tensor& feat, const at::Tensor& logits);
void check_attention_rescale_backward(const at::Tensor& grad, const at::Tensor& feat,
                                      const at::Tensor& logits);

}  // namespace hanet
