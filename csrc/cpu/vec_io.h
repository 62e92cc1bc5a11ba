// Vectorised load/store of any kernel dtype as its accumulation type
// (float for float/half/bfloat16, double for double), built on at::vec.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <limits>

#include "common/hanet_math.h"

namespace hanet {
namespace cpu {

template <typename T>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};
template <typename T>
using acc_t = typename AccType<T>::type;

// VecIO<T>::kStep elements are moved per call as kN vectors of acc_t.
template <typename T>
struct VecIO {
  using Vec = at::vec::Vectorized<acc_t<T>>;
  static constexpr int kN = 1;
  static constexpr int64_t kStep = Vec::size();
  static inline void load(const T* p, Vec* v) { v[0] = Vec::loadu(p); }
  static inline void store(T* p, const Vec* v) { v[0].store(p); }
};

template <typename T>
struct ReducedVecIO {
  using Vec = at::vec::Vectorized<float>;
  static constexpr int kN = 2;
  static constexpr int64_t kStep = at::vec::Vectorized<T>::size();
  static_assert(kStep == 2 * Vec::size(), "reduced-precision vector holds two float vectors");
  static inline void load(const T* p, Vec* v) { at::vec::load_to_float<T>(p, v[0], v[1]); }
  static inline void store(T* p, const Vec* v) {
    at::vec::convert_from_float<T>(v[0], v[1]).store(p);
  }
};
template <>
struct VecIO<c10::Half> : ReducedVecIO<c10::Half> {};
template <>
struct VecIO<c10::BFloat16> : ReducedVecIO<c10::BFloat16> {};

// The one loop of the streaming helpers below: vec(i, v) for each whole step of
// in[0..n) (v: IO::kN acc_t vectors holding in[i..i + kStep)), then scalar(i) for
// each element of the tail.
template <typename T, typename StepF, typename ScalarF>
inline void for_each_step(int64_t n, StepF&& step, ScalarF&& scalar) {
  int64_t i = 0;
  for (; i + VecIO<T>::kStep <= n; i += VecIO<T>::kStep) step(i);
  for (; i < n; ++i) scalar(i);
}

template <typename T, typename VecF, typename ScalarF>
inline void for_each_vec(const T* in, int64_t n, VecF&& vec, ScalarF&& scalar) {
  for_each_step<T>(n, [&](int64_t i) {
    typename VecIO<T>::Vec v[VecIO<T>::kN];
    VecIO<T>::load(in + i, v);
    vec(i, v);
  }, scalar);
}

// for_each_vec over two inputs read in step: vec(i, va, vb).
template <typename T, typename VecF, typename ScalarF>
inline void for_each_vec2(const T* a, const T* b, int64_t n, VecF&& vec, ScalarF&& scalar) {
  for_each_vec(a, n, [&](int64_t i, typename VecIO<T>::Vec* va) {
    typename VecIO<T>::Vec vb[VecIO<T>::kN];
    VecIO<T>::load(b + i, vb);
    vec(i, va, vb);
  }, scalar);
}

// out[i] = f(in[i]) in acc_t: fv(o, v) on the vector of elements [o, o + Vec::size()),
// fs(i, x) on the tail.
template <typename T, typename FV, typename FS>
inline void map_row(const T* in, T* out, int64_t n, FV&& fv, FS&& fs) {
  using IO = VecIO<T>;
  for_each_vec(
      in, n,
      [&](int64_t i, typename IO::Vec* v) {
        for (int k = 0; k < IO::kN; ++k) v[k] = fv(i + k * IO::Vec::size(), v[k]);
        IO::store(out + i, v);
      },
      [&](int64_t i) { out[i] = static_cast<T>(fs(i, static_cast<acc_t<T>>(in[i]))); });
}

// out[i] = in[i] * scale[i] for i < n (scale in acc_t).
template <typename T>
inline void mul_rows(const T* in, const acc_t<T>* scale, T* out, int64_t n) {
  using Vec = typename VecIO<T>::Vec;
  map_row(in, out, n, [&](int64_t o, const Vec& v) { return v * Vec::loadu(scale + o); },
          [&](int64_t i, acc_t<T> x) { return x * scale[i]; });
}

// out[i] = in[i] * a for i < n.
template <typename T>
inline void scale_row(const T* in, acc_t<T> a, T* out, int64_t n) {
  using Vec = typename VecIO<T>::Vec;
  const Vec va(a);
  map_row(in, out, n, [&](int64_t, const Vec& v) { return v * va; },
          [&](int64_t, acc_t<T> x) { return x * a; });
}

// Sum of in[0..n) in acc_t.
template <typename T>
inline acc_t<T> sum_row(const T* in, int64_t n) {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  Vec acc[IO::kN];
  for (int k = 0; k < IO::kN; ++k) acc[k] = Vec(0);
  const int64_t body = n - n % IO::kStep;
  for_each_vec(
      in, body,
      [&](int64_t, Vec* v) {
        for (int k = 0; k < IO::kN; ++k) acc[k] = acc[k] + v[k];
      },
      [](int64_t) {});
  for (int k = 1; k < IO::kN; ++k) acc[0] = acc[0] + acc[k];
  acc_t<T> s = at::vec::vec_reduce_all<acc_t<T>>(
      [](const Vec& x, const Vec& y) { return x + y; }, acc[0]);
  for (int64_t i = body; i < n; ++i) s += static_cast<acc_t<T>>(in[i]);
  return s;
}

// acc[i] += in[i] for i < n (acc in acc_t): column sums over a channels_last row.
template <typename T>
inline void accumulate_row(const T* in, acc_t<T>* acc, int64_t n) {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  for_each_vec(
      in, n,
      [&](int64_t i, Vec* v) {
        for (int k = 0; k < IO::kN; ++k) {
          acc_t<T>* p = acc + i + k * Vec::size();
          (Vec::loadu(p) + v[k]).store(p);
        }
      },
      [&](int64_t i) { acc[i] += static_cast<acc_t<T>>(in[i]); });
}

// Fused backward row: out[i] = g[i] * scale[i]; acc[i] += g[i] * f[i]   (channels_last)
template <typename T>
inline void rescale_backward_cols(const T* g, const T* f, const acc_t<T>* scale, T* out,
                                  acc_t<T>* acc, int64_t n) {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  for_each_vec2(
      g, f, n,
      [&](int64_t i, Vec* vg, Vec* vf) {
        for (int k = 0; k < IO::kN; ++k) {
          const int64_t o = i + k * Vec::size();
          acc_t<T>* pa = acc + o;
          at::vec::fmadd(vg[k], vf[k], Vec::loadu(pa)).store(pa);
          vf[k] = vg[k] * Vec::loadu(scale + o);
        }
        IO::store(out + i, vf);
      },
      [&](int64_t i) {
        const acc_t<T> gv = static_cast<acc_t<T>>(g[i]);
        acc[i] += gv * static_cast<acc_t<T>>(f[i]);
        out[i] = static_cast<T>(gv * scale[i]);
      });
}

// Fused backward row: out[i] = g[i] * a; returns sum g[i] * f[i]   (NCHW)
template <typename T>
inline acc_t<T> rescale_backward_row(const T* g, const T* f, acc_t<T> a, T* out, int64_t n) {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  const Vec va(a);
  Vec acc[IO::kN];
  for (int k = 0; k < IO::kN; ++k) acc[k] = Vec(0);
  const int64_t body = n - n % IO::kStep;
  for_each_vec2(
      g, f, body,
      [&](int64_t i, Vec* vg, Vec* vf) {
        for (int k = 0; k < IO::kN; ++k) {
          acc[k] = at::vec::fmadd(vg[k], vf[k], acc[k]);
          vf[k] = vg[k] * va;
        }
        IO::store(out + i, vf);
      },
      [](int64_t) {});
  for (int k = 1; k < IO::kN; ++k) acc[0] = acc[0] + acc[k];
  acc_t<T> s = at::vec::vec_reduce_all<acc_t<T>>(
      [](const Vec& x, const Vec& y) { return x + y; }, acc[0]);
  for (int64_t i = body; i < n; ++i) {
    const acc_t<T> gv = static_cast<acc_t<T>>(g[i]);
    s += gv * static_cast<acc_t<T>>(f[i]);
    out[i] = static_cast<T>(gv * a);
  }
  return s;
}

// out[i] = value for i < n.
template <typename T>
inline void fill_row(T* out, acc_t<T> value, int64_t n) {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  Vec v[IO::kN];
  for (int k = 0; k < IO::kN; ++k) v[k] = Vec(value);
  int64_t i = 0;
  for (; i + IO::kStep <= n; i += IO::kStep) IO::store(out + i, v);
  const T tail = static_cast<T>(value);
  for (; i < n; ++i) out[i] = tail;
}

// out[i] = src[i] for i < n: acc_t values stored in the kernel dtype.
template <typename T>
inline void store_row(const acc_t<T>* src, T* out, int64_t n) {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  int64_t i = 0;
  for (; i + IO::kStep <= n; i += IO::kStep) {
    Vec v[IO::kN];
    for (int k = 0; k < IO::kN; ++k) v[k] = Vec::loadu(src + i + k * Vec::size());
    IO::store(out + i, v);
  }
  for (; i < n; ++i) out[i] = static_cast<T>(src[i]);
}

// Merges per-lane arg-max states (value, index as acc_t) into one, with PyTorch's rule:
// the last NaN if any lane holds one, else the maximum at the smallest index.  Without
// NaN (the usual case) it stays in vector registers: a fold of the kN vectors, then two
// horizontal reductions; rows of ~100 elements spend most of their time here.
template <typename acc, typename Vec, int kN>
inline void merge_lanes(Vec* bv, Vec* iv, acc& best, int64_t& arg) {
  constexpr int L = Vec::size();
  Vec nan = bv[0].isnan();
  for (int k = 1; k < kN; ++k) nan = nan | bv[k].isnan();
  if (nan.zero_mask() == (1 << L) - 1) {
    for (int k = 1; k < kN; ++k) {
      const Vec take = (bv[k] > bv[0]) | ((bv[k] == bv[0]) & (iv[k] < iv[0]));
      bv[0] = Vec::blendv(bv[0], bv[k], take);
      iv[0] = Vec::blendv(iv[0], iv[k], take);
    }
    const acc m = at::vec::vec_reduce_all<acc>(
        [](const Vec& x, const Vec& y) { return at::vec::maximum(x, y); }, bv[0]);
    const Vec cand = Vec::blendv(Vec(std::numeric_limits<acc>::infinity()), iv[0], bv[0] == Vec(m));
    best = m;
    arg = static_cast<int64_t>(at::vec::vec_reduce_all<acc>(
        [](const Vec& x, const Vec& y) { return at::vec::minimum(x, y); }, cand));
    return;
  }
  bool have = false, seen_nan = false;
  acc lane_b[L];
  acc lane_i[L];
  for (int k = 0; k < kN; ++k) {
    bv[k].store(lane_b);
    iv[k].store(lane_i);
    for (int l = 0; l < L; ++l) {
      const acc vb = lane_b[l];
      const int64_t vi = static_cast<int64_t>(lane_i[l]);
      if (vb != vb) {  // NaN: the last one wins
        if (!seen_nan || vi > arg) arg = vi;
        seen_nan = true;
        best = vb;
      } else if (!seen_nan && (!have || vb > best || (vb == best && vi < arg))) {
        best = vb;
        arg = vi;
      }
      have = true;
    }
  }
}

// Maximum of in[0..n) and its index with PyTorch's rule (the first maximum; the last
// NaN when there is one), in one vector pass: every lane keeps its own running
// maximum and index (scan order within a lane), then the lanes are merged.
template <typename T>
inline void row_max(const T* in, int64_t n, acc_t<T>& best, int64_t& arg) {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  using acc = acc_t<T>;
  constexpr int L = Vec::size();
  const acc lowest = -std::numeric_limits<acc>::infinity();
  Vec bv[IO::kN], iv[IO::kN];  // per lane: running maximum and its index
  for (int k = 0; k < IO::kN; ++k) {
    bv[k] = Vec(lowest);
    iv[k] = Vec(acc(0));
  }
  int64_t i = 0;
  // Lane indices travel as acc_t values: exact while n < 2^24 (checked by the caller).
  Vec idx[IO::kN];
  for (int k = 0; k < IO::kN; ++k) idx[k] = Vec::arange(static_cast<acc>(k * L), acc(1));
  const Vec step(static_cast<acc>(IO::kStep));
  for (; i + IO::kStep <= n; i += IO::kStep) {
    Vec v[IO::kN];
    IO::load(in + i, v);
    for (int k = 0; k < IO::kN; ++k) {
      const Vec take = (v[k] > bv[k]) | v[k].isnan();
      bv[k] = Vec::blendv(bv[k], v[k], take);
      iv[k] = Vec::blendv(iv[k], idx[k], take);
      idx[k] = idx[k] + step;
    }
  }
  acc b = lowest;
  int64_t a = 0;
  if (i > 0) merge_lanes<acc, Vec, IO::kN>(bv, iv, b, a);
  for (; i < n; ++i) {  // the tail, in scan order after every vector element
    const acc v = static_cast<acc>(in[i]);
    if (math::takes_max(v, b)) {
      b = v;
      a = i;
    }
  }
  best = b;
  arg = a;
}

// Running column-wise maximum over a channels_last row: where in[i] takes the
// maximum (greater, or NaN), best[i] = in[i] and argf[i] = col (column as acc_t).
template <typename T>
inline void max_update_cols(const T* in, acc_t<T>* best, acc_t<T>* argf, int64_t n, acc_t<T> col) {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  const Vec vcol(col);
  for_each_vec(
      in, n,
      [&](int64_t i, Vec* v) {
        for (int k = 0; k < IO::kN; ++k) {
          const int64_t o = i + k * Vec::size();
          const Vec b = Vec::loadu(best + o);
          const Vec take = (v[k] > b) | v[k].isnan();
          Vec::blendv(b, v[k], take).store(best + o);
          Vec::blendv(Vec::loadu(argf + o), vcol, take).store(argf + o);
        }
      },
      [&](int64_t i) {
        const acc_t<T> v = static_cast<acc_t<T>>(in[i]);
        if (math::takes_max(v, best[i])) {
          best[i] = v;
          argf[i] = col;
        }
      });
}

// Items per parallel_for chunk so that a chunk touches about `elements` elements.
inline int64_t grain_for(int64_t elements_per_item, int64_t elements = 32768) {
  return elements_per_item >= elements ? 1 : elements / elements_per_item;
}

}  // namespace cpu
}  // namespace hanet
