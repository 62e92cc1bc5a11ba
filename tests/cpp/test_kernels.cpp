// C++ test of the hanet kernels through the dispatcher, against ATen's own ops,
// plus invariants of the shared index math.  Run by ctest (see CMakeLists.txt).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdio>
#include <string>
#include <tuple>

#include "common/hanet_math.h"

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
  }
}

void expect_close(const at::Tensor& a, const at::Tensor& b, double tol, const std::string& what) {
  const bool same_shape = a.sizes() == b.sizes();
  const double err = same_shape ? (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() : -1;
  expect(same_shape && err <= tol, what + " (max error " + std::to_string(err) + ")");
}

template <typename Sig>
auto op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

void test_bins() {
  using namespace hanet::math;
  for (int64_t in = 1; in <= 40; ++in) {
    for (int64_t out = 1; out <= 40; ++out) {
      for (int64_t i = 0; i < out; ++i) {
        const int64_t s = bin_start(i, out, in), e = bin_end(i, out, in);
        expect(0 <= s && s < e && e <= in, "bin inside the input");
      }
      // Every row lies in exactly the bins that first/last_bin_of_row name.
      for (int64_t h = 0; h < in; ++h) {
        for (int64_t i = 0; i < out; ++i) {
          const bool inside = bin_start(i, out, in) <= h && h < bin_end(i, out, in);
          const bool named = first_bin_of_row(h, out, in) <= i && i < last_bin_of_row(h, out, in);
          expect(inside == named, "row-to-bin inverse");
        }
      }
    }
  }
}

void test_ops(at::MemoryFormat fmt) {
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  at::Tensor x = at::randn({2, 5, 13, 7}, opts).contiguous(fmt);
  at::Tensor logits = at::randn({2, 5, 4}, opts);

  auto pool = op<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, c10::SymInt, c10::string_view)>(
      "hanet::width_pool");
  auto [mean, none] = pool.call(x, 4, "mean");
  expect_close(mean, at::adaptive_avg_pool2d(x, {4, 1}).squeeze(-1), 1e-5, "width_pool mean");
  auto [mx, idx] = pool.call(x, 16, "max");
  auto [ref_mx, ref_idx] = at::adaptive_max_pool2d(x, {16, 1});
  expect_close(mx, ref_mx.squeeze(-1), 0, "width_pool max");
  expect(at::equal(idx, ref_idx.squeeze(-1)), "width_pool max indices");

  auto interp = op<at::Tensor(const at::Tensor&, c10::SymInt)>("hanet::height_interp");
  at::Tensor a = interp.call(logits, 13);
  expect_close(a, at::upsample_linear1d(logits, {13}, false), 1e-6, "height_interp");

  auto rescale = op<at::Tensor(const at::Tensor&, const at::Tensor&)>("hanet::attention_rescale");
  at::Tensor out = rescale.call(x, logits);
  at::Tensor ref = x * at::upsample_linear1d(at::sigmoid(logits), {13}, false).unsqueeze(-1);
  expect_close(out, ref, 1e-6, "attention_rescale");
  expect(out.is_contiguous(fmt), "attention_rescale keeps the layout");
}

}  // namespace

int main() {
  at::manual_seed(0);
  test_bins();
  test_ops(at::MemoryFormat::Contiguous);
  test_ops(at::MemoryFormat::ChannelsLast);
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("all hanet kernel checks passed\n");
  return 0;
}
