// Output allocation for the streaming kernels.
//
// A fresh multi-megabyte CPU tensor is first touched by our kernel, and on Linux
// every 4 KiB page of it faults once: for these memory-bound ops the faults cost
// more than the arithmetic.  Where transparent huge pages are in "madvise" mode,
// asking for them on the output cuts the faults 512-fold.
#pragma once

#include <ATen/ATen.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <cstdint>

namespace hanet {
namespace cpu {

inline at::Tensor empty_streaming_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor out = at::empty(sizes, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(out.data_ptr());
  const uintptr_t end = begin + out.nbytes();
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = end & ~(kHuge - 1);
  if (last > first) {
    // Advice only: failure (e.g. THP disabled) leaves ordinary pages.
    (void)madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#endif
  return out;
}

}  // namespace cpu
}  // namespace hanet
