// Argument-check rules and layout helpers shared by the CPU and CUDA kernels (the
// per-op checks that combine them are in contract.cpp).
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
// Every dimension but the batch (dim 0) at least 1: an empty batch is valid, as in F.*.
void check_nonempty(const char* op, const char* name, const at::Tensor& t);
void check_same_device_dtype(const char* op, const char* name_a, const at::Tensor& a,
                             const char* name_b, const at::Tensor& b);
bool parse_pool_mode(const char* op, c10::string_view mode);  // true = max

}  // namespace hanet
