// FastDivmod: exact n / d and n % d, for 0 <= n < 2^63 and 1 <= d < 2^63, by a
// multiply-high, an add and a shift, with no division instruction.
//
// Why: GPUs have no 64-bit integer divide.  In device code a 64-bit `/` or `%` by a
// runtime value is a call to ptxas's division subroutine, and around the call ptxas
// gives the kernel a stack frame and spills registers (tests/test_cuda_build.py checks
// the cubins for none).  So the kernels never divide an int64 by a runtime value:
// the host builds a FastDivmod per divisor and passes it as a kernel argument.
//
// How (Granlund & Montgomery 1994, the "round-up" method that PyTorch's IntDivider
// uses for 32 bits): with l = ceil(log2 d) (0..63) and
//   m = floor(2^64 * (2^l - d) / d) + 1          (< 2^64),
//   q = (mulhi(n, m) + n) >> l,     mulhi(n, m) = floor(n * m / 2^64),
// q = floor(n / d) for every n < 2^64 (m + 2^64 = floor(2^(64+l) / d) + 1), and
// n < 2^63 keeps the 64-bit sum from overflowing.  r = n - q * d.
//
// The constructor computes m on the host (a 128-bit division).  The device takes
// mulhi from __umul64hi, the host from the high half of an unsigned __int128 product;
// everything else is the same code, so tests/cpp/test_fast_divmod.cpp checks the
// device formula on the CPU.
#pragma once

#include <cstdint>
#include <stdexcept>

#include "common/host_device.h"

namespace hanet {
namespace math {

// High 64 bits of the 128-bit product a * b.
HANET_HD uint64_t umulhi64(uint64_t a, uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(a, b);
#else
  return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
#endif
}

class FastDivmod {
 public:
  FastDivmod() = default;  // divides by 1

  // d >= 1 (host only: the magic number takes a 128-bit division).
  HANET_HOST explicit FastDivmod(int64_t d) : d_(d) {
    if (d < 1) throw std::invalid_argument("hanet::math::FastDivmod: divisor must be >= 1");
    const uint64_t ud = static_cast<uint64_t>(d);
    while ((uint64_t(1) << shift_) < ud) ++shift_;  // ceil(log2 d); d < 2^63 stops at 63
    const unsigned __int128 num = static_cast<unsigned __int128>((uint64_t(1) << shift_) - ud) << 64;
    m_ = static_cast<uint64_t>(num / ud + 1);
  }

  HANET_HD int64_t divisor() const { return d_; }
  HANET_HD uint64_t multiplier() const { return m_; }
  HANET_HD int shift() const { return shift_; }

  // n / d, for 0 <= n < 2^63.
  HANET_HD int64_t quot(int64_t n) const {
    const uint64_t un = static_cast<uint64_t>(n);
    return static_cast<int64_t>((umulhi64(un, m_) + un) >> shift_);
  }

  // *q = n / d and *r = n % d, for 0 <= n < 2^63 (q or r may alias n's source).
  HANET_HD void divmod(int64_t n, int64_t* q, int64_t* r) const {
    const int64_t qq = quot(n);
    *r = n - qq * d_;
    *q = qq;
  }

 private:
  int64_t d_ = 1;
  uint64_t m_ = 1;
  int shift_ = 0;
};

// The divisor arguments of the shared index math (hanet_math.h) are int64_t (CPU
// kernels: plain `/`) or FastDivmod (CUDA kernels); these two overloads tell them apart.
HANET_HD int64_t value_of(int64_t d) { return d; }
HANET_HD int64_t value_of(const FastDivmod& d) { return d.divisor(); }
HANET_HD int64_t quot(int64_t n, int64_t d) { return n / d; }
HANET_HD int64_t quot(int64_t n, const FastDivmod& d) { return d.quot(n); }

}  // namespace math
}  // namespace hanet
