// Fused CPU kernels for adaptive convolution (SPEC section 1). Included by one
// .cpp per instruction set, which defines CPU_CAPABILITY (DEFAULT, AVX2, AVX512)
// first; at::vec then picks matching vector types and its SLEEF tanh.
//
// Layout of the work: output pixels are taken kTile at a time (flattened over
// Ho*Wo, vectorised along that axis). For a tile and one input channel the
// zero-padded patch X[tap][pixel] is gathered once and reused by every output
// channel of the group. sigma and K live only in registers (forward) or in one
// tile-sized scratch row (backward): nothing of size N*O*(C/g)*T*Ho*Wo exists.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "adaptive_conv2d_cpu_kernel.h"

namespace adaptive_conv_ext::cpu::CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

// Output pixels per tile: a multiple of every vector width (16 floats on AVX-512).
constexpr int64_t kTile = 64;

// A tile covers output pixels [p0, p0 + count) of the flattened Ho*Wo grid: a few
// runs along output rows. Along a run the taps of one kernel column (a, b) are
// equally spaced in one input row, so gather and scatter work run by run, with
// the zero padding cut off at both ends instead of tested pixel by pixel.
inline int64_t tile_count(const AdaptiveConvShape& s, int64_t p0) {
  return std::min(kTile, s.Ho * s.Wo - p0);
}

// fn(p, len, ih, iw, lo, hi) for each run [p, p + len) of the tile and tap (a, b):
// pixel p + jj reads input (ih, iw + jj * sW); only jj in [lo, hi) lies inside the
// image (ih itself may be outside: then lo == hi).
template <typename Fn>
inline void for_each_tap_run(const AdaptiveConvShape& s, int64_t p0, int64_t count, int64_t a,
                             int64_t b, Fn&& fn) {
  for (int64_t p = 0; p < count;) {
    const int64_t i = (p0 + p) / s.Wo, j0 = (p0 + p) % s.Wo;
    const int64_t len = std::min(s.Wo - j0, count - p);
    const int64_t ih = i * s.sH - s.pH + a * s.dH, iw = j0 * s.sW - s.pW + b * s.dW;
    int64_t lo = 0, hi = 0;
    if (ih >= 0 && ih < s.H) {
      lo = iw >= 0 ? 0 : (-iw + s.sW - 1) / s.sW;           // first jj with iw + jj*sW >= 0
      hi = iw > s.W - 1 ? 0 : (s.W - 1 - iw) / s.sW + 1;    // past the last jj with iw + jj*sW < W
      lo = std::min(lo, len);
      hi = std::min(std::max(hi, lo), len);
    }
    fn(p, len, ih, iw, lo, hi);
    p += len;
  }
}

// patch[t * kTile + p] = X[tap t] of pixel p (zero padding; zero for p >= count).
template <typename T>
void gather_patch(const AdaptiveConvShape& s, int64_t p0, int64_t count, const T* plane, T* patch) {
  for (int64_t a = 0; a < s.kH; ++a) {
    for (int64_t b = 0; b < s.kW; ++b) {
      T* row = patch + (a * s.kW + b) * kTile;
      for_each_tap_run(s, p0, count, a, b, [&](int64_t p, int64_t len, int64_t ih, int64_t iw, int64_t lo, int64_t hi) {
        T* dst = row + p;
        std::fill(dst, dst + lo, T(0));
        if (hi > lo) {
          const T* src = plane + ih * s.W + iw + lo * s.sW;
          if (s.sW == 1) {
            std::copy(src, src + (hi - lo), dst + lo);
          } else {
            for (int64_t jj = lo; jj < hi; ++jj) dst[jj] = src[(jj - lo) * s.sW];
          }
        }
        std::fill(dst + hi, dst + len, T(0));
      });
      std::fill(row + count, row + kTile, T(0));
    }
  }
}

// The transpose of gather_patch (col2im for one tile): plane += dpatch at the taps.
template <typename T>
void scatter_patch(const AdaptiveConvShape& s, int64_t p0, int64_t count, const T* dpatch, T* plane) {
  for (int64_t a = 0; a < s.kH; ++a) {
    for (int64_t b = 0; b < s.kW; ++b) {
      const T* row = dpatch + (a * s.kW + b) * kTile;
      for_each_tap_run(s, p0, count, a, b, [&](int64_t p, int64_t, int64_t ih, int64_t iw, int64_t lo, int64_t hi) {
        if (hi <= lo) return;
        T* dst = plane + ih * s.W + iw + lo * s.sW;
        const T* src = row + p + lo;
        for (int64_t jj = 0; jj < hi - lo; ++jj) dst[jj * s.sW] += src[jj];
      });
    }
  }
}

// sigma for kRows consecutive kernel elements uv0.. of one pixel vector: each loaded
// patch vector X[ab] feeds kRows multiply-adds (register blocking over u,v).
constexpr int64_t kRows = 4;

template <int64_t R, typename T>
inline void sigma_rows(const T* q, const T* beta, const T* X, int64_t T2, int64_t uv0, int64_t p,
                       Vectorized<T>* sigma) {
  using Vec = Vectorized<T>;
  for (int64_t r = 0; r < R; ++r) sigma[r] = Vec(beta ? beta[uv0 + r] : T(0));
  for (int64_t ab = 0; ab < T2; ++ab) {
    const Vec x = Vec::loadu(X + ab * kTile + p);
    for (int64_t r = 0; r < R; ++r) sigma[r] = at::vec::fmadd(Vec(q[(uv0 + r) * T2 + ab]), x, sigma[r]);
  }
}

// Calls body(uv, sigma_vector) for every kernel element uv of pixel vector p, in order.
template <typename T, typename Body>
inline void for_each_sigma(const T* q, const T* beta, const T* X, int64_t T2, int64_t p, Body&& body) {
  Vectorized<T> sigma[kRows];
  int64_t uv = 0;
  for (; uv + kRows <= T2; uv += kRows) {
    sigma_rows<kRows>(q, beta, X, T2, uv, p, sigma);
    for (int64_t r = 0; r < kRows; ++r) body(uv + r, sigma[r]);
  }
  for (; uv < T2; ++uv) {
    sigma_rows<1>(q, beta, X, T2, uv, p, sigma);
    body(uv, sigma[0]);
  }
}

template <typename T>
void forward_impl(const AdaptiveConvShape& s, const T* x, const T* w, const T* kb,
                  const T* bias, T* y) {
  using Vec = Vectorized<T>;
  constexpr int64_t V = Vec::size();
  static_assert(kTile % V == 0, "tile must be a whole number of vectors");
  const int64_t T2 = s.taps(), Cg = s.in_per_group(), Og = s.out_per_group();
  const int64_t L = s.Ho * s.Wo, HW = s.H * s.W;
  const int64_t tiles = (L + kTile - 1) / kTile;

  at::parallel_for(0, s.N * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> patch(T2 * kTile), acc(Og * kTile);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / tiles, p0 = (item % tiles) * kTile;
      const int64_t count = tile_count(s, p0);
      for (int64_t g = 0; g < s.groups; ++g) {
        for (int64_t o = 0; o < Og; ++o)
          std::fill_n(acc.data() + o * kTile, kTile, bias ? bias[g * Og + o] : T(0));
        for (int64_t c = 0; c < Cg; ++c) {
          gather_patch(s, p0, count, x + (n * s.C + g * Cg + c) * HW, patch.data());
          for (int64_t o = 0; o < Og; ++o) {
            const int64_t pair = (g * Og + o) * Cg + c;  // (o, c) generator index
            const T* q = w + pair * T2 * T2;
            const T* beta = kb ? kb + pair * T2 : nullptr;
            T* out = acc.data() + o * kTile;
            const T* X = patch.data();
            for (int64_t p = 0; p < kTile; p += V) {
              Vec y_acc = Vec::loadu(out + p);
              for_each_sigma(q, beta, X, T2, p, [&](int64_t uv, const Vec& sigma) {
                y_acc = at::vec::fmadd(sigma.tanh(), Vec::loadu(X + uv * kTile + p), y_acc);
              });
              y_acc.store(out + p);
            }
          }
        }
        for (int64_t o = 0; o < Og; ++o)
          std::memcpy(y + (n * s.O + g * Og + o) * L + p0, acc.data() + o * kTile, count * sizeof(T));
      }
    }
  });
}

// Backward. Work item = (image n, input channel c'): its grad_input plane is
// written by that item alone, so no two threads touch the same gx element.
// Weight gradients are summed per chunk of items into a private buffer and the
// chunks are added in a fixed order, so results do not depend on scheduling.
template <typename T>
void backward_impl(const AdaptiveConvShape& s, const T* gy, const T* x, const T* w, const T* kb,
                   T* gx, T* gw, T* gkb) {
  using Vec = Vectorized<T>;
  constexpr int64_t V = Vec::size();
  const int64_t T2 = s.taps(), Cg = s.in_per_group(), Og = s.out_per_group();
  const int64_t L = s.Ho * s.Wo, HW = s.H * s.W;
  const int64_t tiles = (L + kTile - 1) / kTile;
  const int64_t items = s.N * s.C;
  const bool need_gx = gx != nullptr, need_gw = gw != nullptr;
  const int64_t w_numel = s.O * Cg * T2 * T2, kb_numel = s.O * Cg * T2;

  if (need_gw) {
    std::fill_n(gw, w_numel, T(0));
    std::fill_n(gkb, kb_numel, T(0));
  }
  if (items == 0 || L == 0) return;

  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), items));
  std::vector<T> gw_part(need_gw ? chunks * w_numel : 0), gkb_part(need_gw ? chunks * kb_numel : 0);

  at::parallel_for(0, chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    std::vector<T> patch(T2 * kTile), dpatch(T2 * kTile), dsig(T2 * kTile), gout(kTile);
    // Per-item gradient accumulators of (o in group, u, v[, a, b]), one vector of lanes each;
    // lanes are summed once per item.
    std::vector<T> dq_lanes(need_gw ? Og * T2 * T2 * V : 0), db_lanes(need_gw ? Og * T2 * V : 0);
    for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
      T* gw_c = need_gw ? gw_part.data() + chunk * w_numel : nullptr;
      T* gkb_c = need_gw ? gkb_part.data() + chunk * kb_numel : nullptr;
      if (need_gw) {
        std::fill_n(gw_c, w_numel, T(0));
        std::fill_n(gkb_c, kb_numel, T(0));
      }
      const int64_t item_begin = items * chunk / chunks, item_end = items * (chunk + 1) / chunks;
      for (int64_t item = item_begin; item < item_end; ++item) {
        const int64_t n = item / s.C, c_abs = item % s.C;
        const int64_t g = c_abs / Cg, c = c_abs % Cg;
        const T* x_plane = x + (n * s.C + c_abs) * HW;
        if (need_gw) {
          std::fill(dq_lanes.begin(), dq_lanes.end(), T(0));
          std::fill(db_lanes.begin(), db_lanes.end(), T(0));
        }
        for (int64_t tile = 0; tile < tiles; ++tile) {
          const int64_t p0 = tile * kTile;
          const int64_t count = tile_count(s, p0);
          gather_patch(s, p0, count, x_plane, patch.data());
          if (need_gx) std::fill(dpatch.begin(), dpatch.end(), T(0));
          const T* X = patch.data();
          for (int64_t o = 0; o < Og; ++o) {
            const int64_t o_abs = g * Og + o, pair = o_abs * Cg + c;
            const T* q = w + pair * T2 * T2;
            const T* beta = kb ? kb + pair * T2 : nullptr;
            const T* gy_row = gy + (n * s.O + o_abs) * L + p0;
            std::copy(gy_row, gy_row + count, gout.begin());
            std::fill(gout.begin() + count, gout.end(), T(0));

            // Recompute sigma and t = K; d sigma = g * X[uv] * (1 - t^2); direct term g * t.
            for (int64_t p = 0; p < kTile; p += V) {
              const Vec G = Vec::loadu(gout.data() + p);
              for_each_sigma(q, beta, X, T2, p, [&](int64_t uv, const Vec& sigma) {
                const Vec t = sigma.tanh();
                const Vec Xuv = Vec::loadu(X + uv * kTile + p);
                if (need_gx) {
                  T* d = dpatch.data() + uv * kTile + p;
                  at::vec::fmadd(G, t, Vec::loadu(d)).store(d);
                }
                (G * Xuv * (Vec(T(1)) - t * t)).store(dsig.data() + uv * kTile + p);
              });
            }
            if (need_gw) {
              // dQ[o,c,uv,ab] += sum_p dsig[uv][p] X[ab][p];  dbeta[o,c,uv] += sum_p dsig[uv][p]
              for (int64_t uv = 0; uv < T2; ++uv) {
                const T* ds = dsig.data() + uv * kTile;
                T* db = db_lanes.data() + (o * T2 + uv) * V;
                Vec db_acc = Vec::loadu(db);
                for (int64_t p = 0; p < kTile; p += V) db_acc = db_acc + Vec::loadu(ds + p);
                db_acc.store(db);
                for (int64_t ab = 0; ab < T2; ++ab) {
                  T* dq = dq_lanes.data() + ((o * T2 + uv) * T2 + ab) * V;
                  Vec dq_acc = Vec::loadu(dq);
                  for (int64_t p = 0; p < kTile; p += V)
                    dq_acc = at::vec::fmadd(Vec::loadu(ds + p), Vec::loadu(X + ab * kTile + p), dq_acc);
                  dq_acc.store(dq);
                }
              }
            }
            if (need_gx) {
              // dX[ab][p] += sum_uv dsig[uv][p] Q[uv, ab]
              for (int64_t p = 0; p < kTile; p += V) {
                for (int64_t ab = 0; ab < T2; ++ab) {
                  T* d = dpatch.data() + ab * kTile + p;
                  Vec acc = Vec::loadu(d);
                  for (int64_t uv = 0; uv < T2; ++uv)
                    acc = at::vec::fmadd(Vec(q[uv * T2 + ab]), Vec::loadu(dsig.data() + uv * kTile + p), acc);
                  acc.store(d);
                }
              }
            }
          }
          if (need_gx) scatter_patch(s, p0, count, dpatch.data(), gx + (n * s.C + c_abs) * HW);
        }
        if (need_gw) {
          for (int64_t o = 0; o < Og; ++o) {
            const int64_t pair = (g * Og + o) * Cg + c;
            for (int64_t uv = 0; uv < T2; ++uv) {
              const T* db = db_lanes.data() + (o * T2 + uv) * V;
              T sum = 0;
              for (int64_t l = 0; l < V; ++l) sum += db[l];
              gkb_c[pair * T2 + uv] += sum;
              for (int64_t ab = 0; ab < T2; ++ab) {
                const T* dq = dq_lanes.data() + ((o * T2 + uv) * T2 + ab) * V;
                T qsum = 0;
                for (int64_t l = 0; l < V; ++l) qsum += dq[l];
                gw_c[(pair * T2 + uv) * T2 + ab] += qsum;
              }
            }
          }
        }
      }
    }
  });

  if (need_gw) {
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const T* gw_c = gw_part.data() + chunk * w_numel;
      const T* gkb_c = gkb_part.data() + chunk * kb_numel;
      for (int64_t i = 0; i < w_numel; ++i) gw[i] += gw_c[i];
      for (int64_t i = 0; i < kb_numel; ++i) gkb[i] += gkb_c[i];
    }
  }
}

}  // namespace

void forward(const AdaptiveConvShape& s, const float* x, const float* w, const float* kb,
             const float* bias, float* y) {
  forward_impl<float>(s, x, w, kb, bias, y);
}
void forward(const AdaptiveConvShape& s, const double* x, const double* w, const double* kb,
             const double* bias, double* y) {
  forward_impl<double>(s, x, w, kb, bias, y);
}
void backward(const AdaptiveConvShape& s, const float* gy, const float* x, const float* w,
              const float* kb, float* gx, float* gw, float* gkb) {
  backward_impl<float>(s, gy, x, w, kb, gx, gw, gkb);
}
void backward(const AdaptiveConvShape& s, const double* gy, const double* x, const double* w,
              const double* kb, double* gx, double* gw, double* gkb) {
  backward_impl<double>(s, gy, x, w, kb, gx, gw, gkb);
}

}  // namespace adaptive_conv_ext::cpu::CPU_CAPABILITY
