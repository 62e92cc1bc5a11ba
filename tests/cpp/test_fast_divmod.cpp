// math::FastDivmod (csrc/common/fast_divmod.h), the divider the CUDA kernels use
// instead of 64-bit `/` and `%`, against the host's `/` and `%`.  The device computes
// the same formula except for the multiply-high (__umul64hi there, the high half of
// an unsigned __int128 product here), and umulhi64 is checked against the exact 128-bit
// product as well, so this test is the CPU proof of the device arithmetic.
// Header-only (no libtorch); run by ctest (see CMakeLists.txt).
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/fast_divmod.h"
#include "common/hanet_math.h"

namespace {

using hanet::math::FastDivmod;
using u128 = unsigned __int128;

int failures = 0;
long long checks = 0;

void expect(bool ok, const std::string& what) {
  ++checks;
  if (!ok && ++failures <= 50) std::fprintf(stderr, "FAIL: %s\n", what.c_str());
}

std::string str(int64_t v) { return std::to_string(v); }

constexpr int64_t kMax = INT64_MAX;  // 2^63 - 1: the largest dividend and divisor

void check(const FastDivmod& fd, int64_t n) {
  const int64_t d = fd.divisor();
  const std::string at = str(n) + " / " + str(d);
  const int64_t q = fd.quot(n);
  int64_t q2 = -1, r2 = -1;
  fd.divmod(n, &q2, &r2);
  expect(q == n / d, "quot " + at + ": " + str(q) + " != " + str(n / d));
  expect(q2 == n / d && r2 == n % d, "divmod " + at + ": " + str(q2) + ", " + str(r2));
  expect(hanet::math::quot(n, fd) == n / d, "math::quot " + at);
}

// Divisors: small, powers of two and their neighbours, around 2^31, 2^32, 2^62, the top.
std::vector<int64_t> divisors() {
  std::vector<int64_t> ds = {1, 2, 3, 5, 6, 7, 9, 10, 11, 12, 13, 25, 100, 641, 1000, 1000003,
                             6700417, 2147483647, 4294967291LL, 1000000007LL * 3,
                             kMax, kMax - 1, kMax / 3, kMax / 7};
  for (int k = 1; k < 63; ++k) {
    const int64_t p = int64_t(1) << k;
    ds.push_back(p);
    ds.push_back(p - 1);
    ds.push_back(p + 1);
  }
  for (int64_t x : {int64_t(1) << 31, int64_t(1) << 32, int64_t(1) << 62}) {
    for (int64_t dx = -5; dx <= 5; ++dx) ds.push_back(x + dx);
  }
  return ds;
}

// Dividends: the edges around d (0, d - 1, d, d + 1, multiples of d and their
// neighbours) and around 2^31, 2^32, 2^62, 2^63 - 1.
std::vector<int64_t> dividends(int64_t d) {
  std::vector<int64_t> ns = {0, 1, 2, 3, d - 1, d, kMax, kMax - 1, kMax - d + 1};
  if (d <= kMax - 1) ns.push_back(d + 1);
  if (d <= kMax / 2) {
    ns.push_back(2 * d - 1);
    ns.push_back(2 * d);
    ns.push_back(2 * d + 1);
  }
  const int64_t top = (kMax / d) * d;  // the largest multiple of d
  ns.push_back(top);
  ns.push_back(top - 1);
  if (top <= kMax - 1) ns.push_back(top + 1);
  for (int k : {31, 32, 33, 62}) {
    const int64_t x = int64_t(1) << k;
    for (int64_t dx = -3; dx <= 3; ++dx) ns.push_back(x + dx);
    const int64_t m = (x / d) * d;  // multiples of d near 2^k
    ns.push_back(m);
    if (m > 0) ns.push_back(m - 1);
    ns.push_back(m + d - 1);
  }
  std::vector<int64_t> out;
  for (int64_t n : ns) {
    if (n >= 0) out.push_back(n);
  }
  return out;
}

void test_edges() {
  for (int64_t d : divisors()) {
    const FastDivmod fd(d);
    expect(fd.divisor() == d, "divisor() of " + str(d));
    for (int64_t n : dividends(d)) check(fd, n);
  }
}

// Divisor and dividend of random bit lengths, so every shift 0..63 is drawn.
void test_random(std::mt19937_64& rng, int count) {
  for (int k = 0; k < count; ++k) {
    int64_t d = static_cast<int64_t>(rng() >> (1 + rng() % 63));
    if (d == 0) d = 1;
    const FastDivmod fd(d);
    for (int j = 0; j < 4; ++j) check(fd, static_cast<int64_t>(rng() >> (1 + rng() % 63)));
  }
}

// The multiply-high primitive against the exact 128-bit product.
void test_umulhi(std::mt19937_64& rng) {
  const uint64_t edge[] = {0, 1, 2, 0xffffffffULL, 0x100000000ULL, 0x8000000000000000ULL,
                           0xffffffffffffffffULL};
  for (uint64_t a : edge) {
    for (uint64_t b : edge) {
      expect(hanet::math::umulhi64(a, b) == static_cast<uint64_t>((static_cast<u128>(a) * b) >> 64),
             "umulhi64 edge");
    }
  }
  for (int k = 0; k < 100000; ++k) {
    const uint64_t a = rng(), b = rng();
    expect(hanet::math::umulhi64(a, b) == static_cast<uint64_t>((static_cast<u128>(a) * b) >> 64),
           "umulhi64 random");
  }
}

// The magic numbers are those of the documented formula: l = ceil(log2 d),
// m = floor(2^64 (2^l - d) / d) + 1.
void test_magic() {
  for (int64_t d : divisors()) {
    const FastDivmod fd(d);
    int l = 0;
    while ((u128(1) << l) < static_cast<u128>(d)) ++l;
    const u128 m = ((u128(1) << l) - static_cast<u128>(d)) * (u128(1) << 64) / static_cast<u128>(d) + 1;
    expect(fd.shift() == l, "shift of " + str(d));
    expect(m < (u128(1) << 64) && fd.multiplier() == static_cast<uint64_t>(m), "multiplier of " + str(d));
  }
  const FastDivmod one;
  expect(one.divisor() == 1 && one.quot(kMax) == kMax, "default FastDivmod divides by 1");
  for (int64_t bad : {int64_t(0), int64_t(-1), INT64_MIN}) {
    bool threw = false;
    try {
      FastDivmod fd(bad);
      (void)fd;
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    expect(threw, "FastDivmod(" + str(bad) + ") throws");
  }
}

}  // namespace

int main() {
  std::mt19937_64 rng(20261206);
  test_magic();
  test_umulhi(rng);
  test_edges();
  test_random(rng, 100000);
  if (failures) {
    std::fprintf(stderr, "%d of %lld FastDivmod check(s) failed\n", failures, checks);
    return 1;
  }
  std::printf("all %lld FastDivmod checks passed\n", checks);
  return 0;
}
