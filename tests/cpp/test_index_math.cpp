// The shared index math of csrc/common/hanet_math.h (the functions both the CPU and the CUDA
// kernels call) at sizes past 2^31 and 2^32, against exact 128-bit integer (and exact
// rational) expectations: no overflow, adaptive bins that cover [0, in) exactly, a
// row-to-bin inverse that names exactly the bins holding a row, linear taps inside the
// input, and gather ranges that name exactly the outputs reading a row.  Every divisor
// argument is checked twice: as an int64_t (the CPU kernels) and as a FastDivmod (the
// CUDA kernels), which must agree exactly.
// Header-only (no libtorch); run by ctest (see CMakeLists.txt).
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/hanet_math.h"

namespace {

using i128 = __int128;
using u128 = unsigned __int128;
using namespace hanet::math;
using hanet::math::FastDivmod;

int failures = 0;
int checks = 0;

void expect(bool ok, const std::string& what) {
  ++checks;
  if (!ok && ++failures <= 50) std::fprintf(stderr, "FAIL: %s\n", what.c_str());
}

std::string str(int64_t v) { return std::to_string(v); }

i128 floor_div(i128 a, i128 b) {  // b > 0
  i128 q = a / b;
  if ((a % b != 0) && (a < 0)) --q;
  return q;
}
i128 ceil_div(i128 a, i128 b) { return -floor_div(-a, b); }

// Sizes past 2^31 and 2^32, and sizes whose products pass 2^63.
const std::vector<int64_t> kBig = {
    (int64_t(1) << 31) - 1, int64_t(1) << 31, (int64_t(1) << 31) + 1, 3000000000LL,
    (int64_t(1) << 32) + 3, 6442450943LL, int64_t(1) << 33, (int64_t(1) << 40) + 7,
    (int64_t(1) << 62) - 1,
};
const std::vector<int64_t> kSmall = {1, 2, 3, 7, 16, 64, 1000003};

// The indices to look at in [0, n): both ends and a few random ones.
std::vector<int64_t> samples(int64_t n, std::mt19937_64& rng, int count = 64) {
  std::vector<int64_t> s;
  for (int64_t k = 0; k < 4 && k < n; ++k) {
    s.push_back(k);
    s.push_back(n - 1 - k);
  }
  for (int k = 0; k < count; ++k) s.push_back(static_cast<int64_t>(rng() % static_cast<uint64_t>(n)));
  return s;
}

void test_mul_div(std::mt19937_64& rng) {
  std::vector<int64_t> values = {0, 1, 2, 3, (int64_t(1) << 31) - 1, int64_t(1) << 31,
                                 3000000000LL, (int64_t(1) << 32) + 1, int64_t(1) << 40,
                                 (int64_t(1) << 62) + 5, INT64_MAX};
  for (int k = 0; k < 2000; ++k) values.push_back(static_cast<int64_t>(rng() >> (1 + rng() % 63)));
  for (int k = 0; k < 20000; ++k) {
    const int64_t a = values[rng() % values.size()], b = values[rng() % values.size()];
    int64_t c = values[rng() % values.size()];
    if (c == 0) c = 1;
    const u128 p = static_cast<u128>(a) * static_cast<u128>(b);
    const u128 fl = p / static_cast<u128>(c), ce = (p + static_cast<u128>(c) - 1) / static_cast<u128>(c);
    if (ce > static_cast<u128>(INT64_MAX)) continue;  // the quotient must fit int64
    expect(mul_div_floor(a, b, c) == static_cast<int64_t>(fl),
           "mul_div_floor(" + str(a) + ", " + str(b) + ", " + str(c) + ")");
    expect(mul_div_ceil(a, b, c) == static_cast<int64_t>(ce),
           "mul_div_ceil(" + str(a) + ", " + str(b) + ", " + str(c) + ")");
    const FastDivmod fc(c);
    expect(mul_div_floor(a, b, fc) == static_cast<int64_t>(fl),
           "mul_div_floor(" + str(a) + ", " + str(b) + ", FastDivmod(" + str(c) + "))");
    expect(mul_div_ceil(a, b, fc) == static_cast<int64_t>(ce),
           "mul_div_ceil(" + str(a) + ", " + str(b) + ", FastDivmod(" + str(c) + "))");
  }
}

// Bins of `out` bins over `in` rows: exact bounds, inside [0, in), covering it in order.
void test_bins(int64_t in, int64_t out, std::mt19937_64& rng) {
  const std::string tag = " (in=" + str(in) + ", out=" + str(out) + ")";
  const FastDivmod fin(in), fout(out);
  expect(bin_start(0, out, in) == 0, "first bin starts at row 0" + tag);
  expect(bin_end(out - 1, out, in) == in, "last bin ends at row in" + tag);
  for (int64_t i : samples(out, rng)) {
    const int64_t s = bin_start(i, out, in), e = bin_end(i, out, in);
    expect(s == static_cast<int64_t>(floor_div(static_cast<i128>(i) * in, out)),
           "bin_start exact, i=" + str(i) + tag);
    expect(e == static_cast<int64_t>(ceil_div(static_cast<i128>(i + 1) * in, out)),
           "bin_end exact, i=" + str(i) + tag);
    expect(0 <= s && s < e && e <= in, "bin inside the input, i=" + str(i) + tag);
    expect(bin_start(i, fout, in) == s && bin_end(i, fout, in) == e,
           "FastDivmod bin = int64 bin, i=" + str(i) + tag);
    if (i + 1 < out) {
      // consecutive bins: no gap between them, starts non-decreasing
      const int64_t s1 = bin_start(i + 1, out, in);
      expect(s <= s1 && s1 <= e, "bins cover the rows without gaps, i=" + str(i) + tag);
    }
  }
  // The row-to-bin inverse names exactly the bins that hold the row.
  for (int64_t h : samples(in, rng)) {
    const int64_t f = first_bin_of_row(h, out, in), l = last_bin_of_row(h, out, in);
    expect(0 <= f && f < l && l <= out, "row in at least one bin, h=" + str(h) + tag);
    expect(first_bin_of_row(h, out, fin) == f && last_bin_of_row(h, out, fin) == l,
           "FastDivmod row-to-bin = int64 row-to-bin, h=" + str(h) + tag);
    for (int64_t i : {f, l - 1}) {
      expect(bin_start(i, out, in) <= h && h < bin_end(i, out, in),
             "named bin holds the row, h=" + str(h) + tag);
    }
    if (f > 0) expect(h >= bin_end(f - 1, out, in), "bin before the first misses the row, h=" + str(h) + tag);
    if (l < out) expect(h < bin_start(l, out, in), "bin after the last misses the row, h=" + str(h) + tag);
  }
}

// mean_grad_at_row with FastDivmod divisors is the int64 one, bit for bit (small sizes:
// it loops over the bins of a row).
void test_mean_grad(std::mt19937_64& rng) {
  std::vector<double> g(4096);
  for (double& v : g) v = static_cast<double>(rng() % 2001) / 1000.0 - 1.0;
  for (int64_t H : {1, 2, 3, 7, 16, 33, 100, 1000}) {
    for (int64_t rows : {1, 2, 3, 5, 16, 64, 100, 1000}) {
      const FastDivmod fH(H), frows(rows);
      for (int64_t y = 0; y < H; ++y) {
        const double a = mean_grad_at_row<double>(g.data(), y, rows, H, int64_t(3));
        const double b = mean_grad_at_row<double>(g.data(), y, frows, fH, int64_t(3));
        const double c = mean_grad_at_row<double>(g.data(), y, rows, fH, int64_t(3));
        expect(a == b && a == c, "mean_grad_at_row FastDivmod, y=" + str(y) + " H=" + str(H) +
                                     " rows=" + str(rows));
      }
    }
  }
}

// Linear taps (align_corners=False) at huge sizes: inside the input, weights in [0, 1]
// summing to 1, i0 non-decreasing, and i0 within rounding of the exact rational
// floor(((2 dst + 1) in - out) / (2 out)).
template <typename acc_t>
void test_taps(int64_t in, int64_t out, std::mt19937_64& rng) {
  const std::string tag = std::string(sizeof(acc_t) == 4 ? " float" : " double") + " (in=" + str(in) +
                          ", out=" + str(out) + ")";
  const double eps = std::is_same<acc_t, float>::value ? 1.2e-7 : 2.3e-16;
  for (int64_t d : samples(out, rng)) {
    const LinearTap<acc_t> t = linear_tap<acc_t>(d, in, out);
    const std::string at = ", dst=" + str(d) + tag;
    expect(0 <= t.i0 && t.i0 <= t.i1 && t.i1 <= in - 1 && t.i1 - t.i0 <= 1, "taps inside the input" + at);
    expect(t.w0 >= 0 && t.w0 <= 1 && t.w1 >= 0 && t.w1 <= 1, "weights in [0, 1]" + at);
    expect(std::fabs(static_cast<double>(t.w0) + static_cast<double>(t.w1) - 1.0) <= 2 * eps,
           "weights sum to 1" + at);
    if (d + 1 < out) expect(linear_tap<acc_t>(d + 1, in, out).i0 >= t.i0, "i0 non-decreasing" + at);
    if (in == out) {
      expect(t.i0 == d && t.i1 == d && t.w1 == 0, "a copy when in == out" + at);
      continue;
    }
    i128 exact = floor_div((2 * static_cast<i128>(d) + 1) * in - out, 2 * static_cast<i128>(out));
    if (exact < 0) exact = 0;
    if (exact > in - 1) exact = in - 1;
    // the coordinate is computed in acc_t: allow its rounding (a few ulps of in) plus one
    const double slack = 4 * eps * static_cast<double>(in) + 1;
    expect(std::fabs(static_cast<double>(t.i0 - static_cast<int64_t>(exact))) <= slack,
           "i0 = " + str(t.i0) + " near the exact " + str(static_cast<int64_t>(exact)) + at);
  }
}

// The gather of the interpolation adjoint: [begin, end) are exactly the outputs whose
// taps read input row `src`.
template <typename acc_t>
void test_gather(int64_t in, int64_t out, std::mt19937_64& rng) {
  const std::string tag = " (in=" + str(in) + ", out=" + str(out) + ")";
  auto reads = [&](int64_t d, int64_t src) {
    const LinearTap<acc_t> t = linear_tap<acc_t>(d, in, out);
    return t.i0 == src || t.i1 == src;
  };
  for (int64_t src : samples(in, rng, 24)) {
    int64_t begin = 0, end = 0;
    dst_range_reading<acc_t>(src, in, out, &begin, &end);
    const std::string at = ", src=" + str(src) + tag;
    expect(0 <= begin && begin <= end && end <= out, "gather range inside the output" + at);
    if (begin < end) {
      expect(reads(begin, src) && reads(end - 1, src), "ends of the range read the row" + at);
      if (end - begin > 2) expect(reads(begin + (end - begin) / 2, src), "middle of the range reads the row" + at);
    }
    if (begin > 0) expect(!reads(begin - 1, src), "output before the range does not read the row" + at);
    if (end < out) expect(!reads(end, src), "output after the range does not read the row" + at);
  }
}

}  // namespace

int main() {
  std::mt19937_64 rng(20240611);
  test_mul_div(rng);
  test_mean_grad(rng);
  std::vector<int64_t> sizes = kBig;
  sizes.insert(sizes.end(), kSmall.begin(), kSmall.end());
  for (int64_t in : sizes) {
    for (int64_t out : sizes) {
      test_bins(in, out, rng);
      // Interpolated sizes are tensor dims: up to 2^40 (taps in float lose precision
      // past 2^24 as PyTorch's own do; they must still stay inside the input).
      if (in <= (int64_t(1) << 41) && out <= (int64_t(1) << 41)) {
        test_taps<float>(in, out, rng);
        test_taps<double>(in, out, rng);
        test_gather<double>(in, out, rng);
        test_gather<float>(in, out, rng);
      }
    }
  }
  // The shapes of the brief: 3e9 input rows pooled to bins near 2^31 and past 2^32.
  for (int64_t out : {int64_t(16), (int64_t(1) << 31) - 3, int64_t(1) << 31, int64_t(3100000000LL),
                      int64_t(4000000000LL)}) {
    test_bins(3000000000LL, out, rng);
  }
  if (failures) {
    std::fprintf(stderr, "%d of %d index-math check(s) failed\n", failures, checks);
    return 1;
  }
  std::printf("all %d index-math checks passed (sizes up to 2^62)\n", checks);
  return 0;
}
