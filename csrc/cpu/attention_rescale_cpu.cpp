// CPU kernels of hanet::attention_rescale and its fused backward.
//
// out = feat * A[b, c, y], A = linear interpolation (to H rows) of sigmoid(logits).
// The sigmoid of the small logits tensor and the interpolation taps are computed
// once; the full-size tensors are then streamed exactly once per pass.  With
// feat_is_output the backward streams the forward's output in feat's place and
// divides each row sum by A (math::feat_dot_from_result); with attention_grad it
// returns those row sums, the gradient of A, in place of the logits' gradient.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <tuple>
#include <vector>

#include "common/hanet_math.h"
#include "contract.h"
#include "alloc.h"
#include "vec_io.h"

namespace hanet {
namespace cpu {
namespace {

using math::LinearTap;

template <typename acc>
std::vector<LinearTap<acc>> make_taps(int64_t in_size, int64_t out_size) {
  std::vector<LinearTap<acc>> taps(out_size);
  for (int64_t y = 0; y < out_size; ++y) taps[y] = math::linear_tap<acc>(y, in_size, out_size);
  return taps;
}

// sigmoid(logits) as a contiguous (B, C, h) acc_t buffer.
template <typename T>
at::Tensor sigmoid_table(const at::Tensor& logits) {
  using acc = acc_t<T>;
  auto sig = at::empty(logits.sizes(), logits.options().dtype(c10::CppTypeToScalarType<acc>::value));
  const T* src = logits.const_data_ptr<T>();
  acc* dst = sig.template mutable_data_ptr<acc>();
  at::parallel_for(0, logits.numel(), 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dst[i] = math::sigmoid(static_cast<acc>(src[i]));
  });
  return sig;
}

// What both directions precompute: the sizes, the interpolation taps of every output
// row and sigmoid(logits).
template <typename T>
struct Setup {
  int64_t B, C, H, W, h;
  std::vector<LinearTap<acc_t<T>>> taps;
  at::Tensor sig;
  const acc_t<T>* S;
  Setup(const at::Tensor& feat, const at::Tensor& logits)
      : B(feat.size(0)), C(feat.size(1)), H(feat.size(2)), W(feat.size(3)), h(logits.size(2)),
        taps(make_taps<acc_t<T>>(h, H)), sig(sigmoid_table<T>(logits)),
        S(sig.const_data_ptr<acc_t<T>>()) {}
};

template <typename acc>
inline acc attention_at(const acc* sig_row, const LinearTap<acc>& t) {
  return t.w0 * sig_row[t.i0] + t.w1 * sig_row[t.i1];
}

template <typename T>
void forward_kernel(const at::Tensor& feat, const at::Tensor& logits, at::Tensor& out,
                    Layout layout) {
  using acc = acc_t<T>;
  const Setup<T> st(feat, logits);
  const int64_t B = st.B, C = st.C, H = st.H, W = st.W, h = st.h;
  const T* F = feat.const_data_ptr<T>();
  T* O = out.mutable_data_ptr<T>();

  if (layout == Layout::NCHW) {
    at::parallel_for(0, B * C, grain_for(H * W), [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const acc* s = st.S + p * h;
        for (int64_t y = 0; y < H; ++y) {
          const int64_t off = (p * H + y) * W;
          scale_row<T>(F + off, attention_at(s, st.taps[y]), O + off, W);
        }
      }
    });
  } else {
    at::parallel_for(0, B * H, grain_for(W * C), [&](int64_t begin, int64_t end) {
      std::vector<acc> a(C);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H, y = r % H;
        for (int64_t c = 0; c < C; ++c) a[c] = attention_at(st.S + (b * C + c) * h, st.taps[y]);
        for (int64_t x = 0; x < W; ++x) {
          const int64_t off = (r * W + x) * C;
          mul_rows<T>(F + off, a.data(), O + off, C);
        }
      }
    });
  }
}

// grad_logits[b, c, :] from the per-row sums gA[b, c, 0..H): interpolation
// adjoint, then the sigmoid derivative.
template <typename T>
inline void logits_grad_row(const acc_t<T>* gA, int64_t H, const acc_t<T>* s, int64_t h,
                            acc_t<T>* scratch, T* grad_logits) {
  math::linear_backward_row<acc_t<T>>(gA, H, scratch, h);
  for (int64_t j = 0; j < h; ++j)
    grad_logits[j] = static_cast<T>(scratch[j] * s[j] * (acc_t<T>(1) - s[j]));
}

template <typename T>
void backward_kernel(const at::Tensor& grad, const at::Tensor& feat, const at::Tensor& logits,
                     at::Tensor& grad_feat, at::Tensor& grad_logits, Layout layout,
                     bool feat_is_output, bool attention_grad) {
  using acc = acc_t<T>;
  const auto row_dot = [feat_is_output](acc dot, acc a) {
    return feat_is_output ? math::feat_dot_from_result(dot, a) : dot;
  };
  const Setup<T> st(feat, logits);
  const int64_t B = st.B, C = st.C, H = st.H, W = st.W, h = st.h;
  const T* G = grad.const_data_ptr<T>();
  const T* F = feat.const_data_ptr<T>();
  T* GF = grad_feat.mutable_data_ptr<T>();
  T* GL = grad_logits.mutable_data_ptr<T>();

  if (layout == Layout::NCHW) {
    // One task owns whole (b, c) planes: row sums and the logits gradient stay local.
    at::parallel_for(0, B * C, grain_for(H * W), [&](int64_t begin, int64_t end) {
      std::vector<acc> gA(H), scratch(h);
      for (int64_t p = begin; p < end; ++p) {
        const acc* s = st.S + p * h;
        for (int64_t y = 0; y < H; ++y) {
          const int64_t off = (p * H + y) * W;
          const acc a = attention_at(s, st.taps[y]);
          gA[y] = row_dot(rescale_backward_row<T>(G + off, F + off, a, GF + off, W), a);
        }
        if (attention_grad) {
          for (int64_t y = 0; y < H; ++y) GL[p * H + y] = static_cast<T>(gA[y]);
        } else {
          logits_grad_row<T>(gA.data(), H, s, h, scratch.data(), GL + p * h);
        }
      }
    });
  } else {
    // Pass 1: one task per (b, y) image row, channel sums in a small (B, C, H) buffer.
    at::Tensor gA_buf = at::empty({B, C, H}, st.sig.options());
    acc* GA = gA_buf.mutable_data_ptr<acc>();
    at::parallel_for(0, B * H, grain_for(W * C), [&](int64_t begin, int64_t end) {
      std::vector<acc> a(C), sums(C);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H, y = r % H;
        for (int64_t c = 0; c < C; ++c) {
          a[c] = attention_at(st.S + (b * C + c) * h, st.taps[y]);
          sums[c] = acc(0);
        }
        for (int64_t x = 0; x < W; ++x) {
          const int64_t off = (r * W + x) * C;
          rescale_backward_cols<T>(G + off, F + off, a.data(), GF + off, sums.data(), C);
        }
        for (int64_t c = 0; c < C; ++c) GA[(b * C + c) * H + y] = row_dot(sums[c], a[c]);
      }
    });
    if (attention_grad) {  // the row sums are the answer
      grad_logits.copy_(gA_buf);
      return;
    }
    // Pass 2: the tiny logits gradient per (b, c).
    at::parallel_for(0, B * C, grain_for(H + h, 4096), [&](int64_t begin, int64_t end) {
      std::vector<acc> scratch(h);
      for (int64_t p = begin; p < end; ++p)
        logits_grad_row<T>(GA + p * H, H, st.S + p * h, h, scratch.data(), GL + p * h);
    });
  }
}

}  // namespace

at::Tensor attention_rescale(const at::Tensor& feat_in, const at::Tensor& logits_in) {
  check_attention_rescale(feat_in, logits_in);
  const at::Tensor feat = to_supported_layout(feat_in);
  const at::Tensor logits = logits_in.contiguous();
  const Layout layout = layout_of(feat);
  at::Tensor out =
      empty_streaming_output(feat.sizes(), feat.options().memory_format(memory_format_of(layout)));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, feat.scalar_type(),
                                  "hanet_attention_rescale_cpu",
                                  [&] { forward_kernel<scalar_t>(feat, logits, out, layout); });
  return out;
}

std::tuple<at::Tensor, at::Tensor> attention_rescale_backward(const at::Tensor& grad_in,
                                                                  const at::Tensor& feat_in,
                                                                  const at::Tensor& logits_in,
                                                                  bool feat_is_output,
                                                                  bool attention_grad) {
  check_attention_rescale_backward(grad_in, feat_in, logits_in);
  const at::Tensor feat = to_supported_layout(feat_in);
  const Layout layout = layout_of(feat);
  const at::MemoryFormat fmt = memory_format_of(layout);
  // grad must share feat's layout so both stream in the same order (copies only if not).
  const at::Tensor grad = grad_in.contiguous(fmt);
  const at::Tensor logits = logits_in.contiguous();
  at::Tensor grad_feat = empty_streaming_output(feat.sizes(), feat.options().memory_format(fmt));
  at::Tensor grad_logits = attention_grad
                               ? at::empty({feat.size(0), feat.size(1), feat.size(2)}, logits.options())
                               : at::empty(logits.sizes(), logits.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, feat.scalar_type(), "hanet_attention_rescale_backward_cpu", [&] {
        backward_kernel<scalar_t>(grad, feat, logits, grad_feat, grad_logits, layout,
                                  feat_is_output, attention_grad);
      });
  return {grad_feat, grad_logits};
}

}  // namespace cpu
}  // namespace hanet
