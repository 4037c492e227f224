// Host-side planner: tiles, shared-memory carve-up, workspaces, index width and which
// kernel runs, for one call on a device described by DeviceLimits (a pure function: the
// caller queries the device), with every kernel's configuration struct (configs.h) filled
// in. Included once, by planner.cu (and through it by the CPU emulation and its plan
// printer); it includes no kernel.
#pragma once

#include <algorithm>
#include <climits>
#include <cstdio>
#include <vector>

#include "../adaptive_conv2d_kernels.cuh"

namespace adaptive_conv_ext {
namespace cuda {

namespace {

// A block of output pixels (one pixel per thread) and the input box, halo
// included, that its patches read: bh x bw input rows x columns.
struct TileGeom {
  int toh = 1, tow = 1;  // output tile height, width (toh * tow <= threads)
  int bh = 1, bw = 1;    // input box height, width
  int64_t tiles_h = 1, tiles_w = 1;
};

// The tile fields every kernel configuration shares.
template <typename Cfg>
void set_tile(Cfg* c, const TileGeom& t) {
  c->toh = t.toh;
  c->tow = t.tow;
  c->P = t.toh * t.tow;
  c->bh = t.bh;
  c->bw = t.bw;
  c->box = t.bh * t.bw;
  c->tiles_h = static_cast<int>(t.tiles_h);
  c->tiles_w = static_cast<int>(t.tiles_w);
}

// The geometry as the kernels see it; vec: accumulators per 16 bytes (row padding of Tp).
Geom make_geom(const AdaptiveConvShape& s, int64_t vec) {
  Geom g;
  g.N = static_cast<int>(s.N);
  g.C = static_cast<int>(s.C);
  g.H = static_cast<int>(s.H);
  g.W = static_cast<int>(s.W);
  g.O = static_cast<int>(s.O);
  g.G = static_cast<int>(s.groups);
  g.Cg = static_cast<int>(s.C / s.groups);
  g.Og = static_cast<int>(s.O / s.groups);
  g.kH = static_cast<int>(s.kH);
  g.kW = static_cast<int>(s.kW);
  g.T = static_cast<int>(s.kH * s.kW);
  g.Tp = static_cast<int>(align_up(s.kH * s.kW, vec));
  g.sH = static_cast<int>(s.sH);
  g.sW = static_cast<int>(s.sW);
  g.pH = static_cast<int>(s.pH);
  g.pW = static_cast<int>(s.pW);
  g.dH = static_cast<int>(s.dH);
  g.dW = static_cast<int>(s.dW);
  g.Ho = static_cast<int>(s.Ho);
  g.Wo = static_cast<int>(s.Wo);
  return g;
}

int64_t esize_of(DType t) { return t == DType::kFloat64 ? 8 : 4; }  // accumulator bytes
int64_t pow2ceil(int64_t v) {
  int64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

bool static_size(const AdaptiveConvShape& s) {
  return s.kH == s.kW && (s.kH == 3 || s.kH == 5 || s.kH == 7);
}

// The tensor-core kernels' variant for T taps: T = 8 tail + 1 at compile time where
// MmaVariants (configs.h) has that variant (the odd square kernels 1x1, 3x3, 5x5, 7x7), -1
// (any T) otherwise.
int mma_tail_of(int64_t T) {
  const int tail = static_cast<int>((T - 1) / 8);
  return (T - 1) % 8 == 0 && has_mma_variant(static_cast<int>(ceil_div(T + 1, 16)), tail) ? tail : -1;
}

// The planner's view of the device: what the caller passed, clamped to what every kernel
// may assume (at least one SM and the default 48 KB of shared memory per block).
struct DevLimits {
  int sms = 1;
  int64_t optin = kDefaultSmem;
  int64_t per_sm = kDefaultSmem + 1024;
  bool tensor_cores = true;  // mma.sync m16n8k16 with f16/bf16 (sm_80+; ptx.cuh traps below)
};

DevLimits dev_limits(const DeviceLimits& d) {
  DevLimits l;
  l.sms = std::max(d.sms, 1);
  l.optin = std::max<int64_t>(d.smem_optin, kDefaultSmem);
  l.per_sm = std::max<int64_t>(d.smem_per_sm, l.optin + 1024);
  l.tensor_cores = d.arch >= 80;
  return l;
}

// "N x C x H x W, O output channels, kH x kW ...": the shape named in the planner's reasons.
std::string shape_text(const AdaptiveConvShape& s) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "input %lld x %lld x %lld x %lld, %lld output channels, kernel %lld x %lld, stride %lld x %lld, "
                "padding %lld x %lld, dilation %lld x %lld, groups %lld",
                static_cast<long long>(s.N), static_cast<long long>(s.C), static_cast<long long>(s.H),
                static_cast<long long>(s.W), static_cast<long long>(s.O), static_cast<long long>(s.kH),
                static_cast<long long>(s.kW), static_cast<long long>(s.sH), static_cast<long long>(s.sW),
                static_cast<long long>(s.pH), static_cast<long long>(s.pW), static_cast<long long>(s.dH),
                static_cast<long long>(s.dW), static_cast<long long>(s.groups));
  return buf;
}

// Budgets tried in order: stay within the default 48 KB when possible (occupancy),
// then opt in to more before giving up on a tile shape.
std::vector<int64_t> budgets(const DevLimits& d) {
  std::vector<int64_t> b{kDefaultSmem};
  if (d.optin > 96 * 1024) b.push_back(96 * 1024);
  if (d.optin > b.back()) b.push_back(d.optin);
  return b;
}

// Budgets of the fused tensor-core backward. Its registers (96-255 per thread) allow at most
// two blocks per SM, so the largest budget that still lets two blocks share an SM comes
// first (1 KB of an SM's shared memory is reserved per block): more output channels per
// round cost shared memory but save per-round work, and with oct >= 2 the odd square kernels
// run the paired loop and the shared last-tap tile.
std::vector<int64_t> bwd_mma_budgets(const DevLimits& d) {
  const int64_t two_per_sm = std::min(d.per_sm / 2 - 1024, d.optin);
  if (two_per_sm <= kDefaultSmem) return budgets(d);
  std::vector<int64_t> b{two_per_sm};
  if (d.optin > two_per_sm) b.push_back(d.optin);
  return b;
}

// An output tile of toh x tow pixels and its input box; false when the box is too large.
bool make_tile(const AdaptiveConvShape& s, int64_t toh, int64_t tow, TileGeom* t) {
  const int64_t bh = (toh - 1) * s.sH + (s.kH - 1) * s.dH + 1;
  const int64_t bw = (tow - 1) * s.sW + (s.kW - 1) * s.dW + 1;
  if (!(bh < INT_MAX / 4 && bw < INT_MAX / 4 && bh * bw < INT_MAX / 4)) return false;
  t->toh = static_cast<int>(toh);
  t->tow = static_cast<int>(tow);
  t->bh = static_cast<int>(bh);
  t->bw = static_cast<int>(bw);
  t->tiles_h = ceil_div(s.Ho, toh);
  t->tiles_w = ceil_div(s.Wo, tow);
  return true;
}

// Tile shapes, best first: 256 pixels as wide as the output allows (coalesced rows),
// then halving the longer side (large strides/dilations make the box too big).
std::vector<TileGeom> tile_sequence(const AdaptiveConvShape& s, int64_t pixels = kThreads) {
  std::vector<TileGeom> out;
  int64_t tow = std::min<int64_t>(pow2ceil(s.Wo), 32);
  int64_t toh = std::min<int64_t>(pixels / tow, s.Ho);
  tow = std::min<int64_t>(pow2ceil(s.Wo), pixels / pow2ceil(toh));  // widen short images
  for (;;) {
    TileGeom t;
    if (make_tile(s, toh, tow, &t)) out.push_back(t);
    if (toh == 1 && tow == 1) break;
    if (toh >= tow) {
      toh = (toh + 1) / 2;
    } else {
      tow /= 2;
    }
  }
  return out;
}

// Tiles of the tensor-core forward: tile_sequence's, led by a width w <= 32 that divides Wo
// (with as many rows as fit 128 pixels) when that leaves fewer of the warps' 16-pixel slots
// empty: 56- and 28-wide outputs then run 28 x 4 tiles (7 full warps) instead of 32 x 4 with
// 1/8 of every tanh outside the image.
std::vector<TileGeom> mma_tile_sequence(const AdaptiveConvShape& s) {
  std::vector<TileGeom> seq = tile_sequence(s, kMmaPixels);
  if (seq.empty() || s.Ho * s.Wo == 0) return seq;
  auto slots = [&](int64_t toh, int64_t tow) {  // warp pixel slots launched for the whole output
    return ceil_div(s.Ho, toh) * ceil_div(s.Wo, tow) * ceil_div(toh * tow, 16) * 16;
  };
  int64_t best = slots(seq[0].toh, seq[0].tow), best_h = 0, best_w = 0;
  for (int64_t w = std::min<int64_t>(s.Wo, 32); w >= 8; --w) {
    const int64_t h = std::min<int64_t>(s.Ho, kMmaPixels / w);
    if (s.Wo % w == 0 && slots(h, w) < best) {
      best = slots(h, w);
      best_h = h;
      best_w = w;
    }
  }
  TileGeom t;
  if (best_w > 0 && make_tile(s, best_h, best_w, &t)) seq.insert(seq.begin(), t);
  return seq;
}

// Chunks of kernel rows: pass 0 keeps all T rows together (required by the static
// kernels); pass 1 splits them (only huge generic kernels need that).
std::vector<int64_t> row_chunks(int64_t T, int pass) {
  std::vector<int64_t> v;
  if (pass == 0) {
    v.push_back(T);
  } else {
    int64_t last = T;
    for (int64_t k = 2; k <= T; ++k) {
      const int64_t tt = ceil_div(T, k);
      if (tt < last) v.push_back(tt);
      last = tt;
      if (tt == 1) break;
    }
  }
  return v;
}

bool check_ranges(const AdaptiveConvShape& s, std::string* why) {
  const int64_t lim = int64_t(1) << 30;
  const bool ok = s.kH >= 1 && s.kW >= 1 && s.N < INT_MAX && s.C < INT_MAX && s.O < INT_MAX && s.H + 2 * s.pH < lim &&
                  s.W + 2 * s.pW < lim && (s.kH - 1) * s.dH < lim && (s.kW - 1) * s.dW < lim &&
                  s.sH < lim && s.sW < lim && s.kH * s.kW < (int64_t(1) << 20) &&
                  s.Ho * s.sH < lim && s.Wo * s.sW < lim;
  if (!ok) *why = "a size, padding, stride or dilation is too large for the CUDA kernels";
  return ok;
}

bool needs_int64(std::initializer_list<int64_t> counts) {
  for (int64_t c : counts) {
    if (c >= static_cast<int64_t>(INT_MAX) - 1) return true;
  }
  return false;
}

// The order every planner tries candidates in, best first: whole Q rows before row
// chunks (pass), larger pixel tiles, the default shared-memory budget before opt-in,
// more output channels per block (oq). Returns whether fits(tile, budget, oq, tt)
// accepted one; fits records its plan before saying yes.
template <typename Fits>
bool search_plans(int64_t T, const std::vector<TileGeom>& tiles, const std::vector<int64_t>& bud,
                  int64_t oq_max, Fits&& fits) {
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1 && T == 1) break;
    for (const TileGeom& t : tiles)
      for (int64_t budget : bud)
        for (int64_t oq = oq_max; oq >= 1; --oq)
          for (int64_t tt : row_chunks(T, pass))
            if (fits(t, budget, oq, tt)) return true;
  }
  return false;
}

// The tensor-core forward (kernels/forward_mma.cuh): float16/bfloat16, 32-bit indexing,
// T + 1 <= 64. Shared memory (16-bit elements): Q [cch][oct][16 ks][16 ks + 8] (+ the shared
// last-tap tile [8][16 ks + 8] per channel) | box [cch][bh * bw + 2]. The shared tile is
// used for the odd square kernels (the tail >= 0 variants of MmaVariants: T = 1, 9, 25, 49)
// with 2 or more output channels per block. Returns false when it does not apply or nothing
// fits (the caller then plans the scalar kernels).
bool plan_forward_mma(const AdaptiveConvShape& s, const DevLimits& dl, ForwardPlan* plan) {
  const int64_t T = s.kH * s.kW, Cg = s.C / s.groups, Og = s.O / s.groups;
  if (T + 1 > mma_k(kMmaMaxKs)) return false;
  const int ks = static_cast<int>(ceil_div(T + 1, 16));
  const bool odd_square = mma_tail_of(T) >= 0;
  if (!has_mma_variant(ks, mma_tail_of(T))) return false;
  const int64_t oct_max = std::max<int64_t>(1, std::min<int64_t>(Og, kMmaOct));
  auto bytes_of = [&](const TileGeom& t, int64_t oct, int64_t cch) {
    const bool shared = odd_square && oct >= 2;
    return (align_up(cch * mma_q_chunk(ks, static_cast<int>(oct), shared), 8) + cch * (int64_t(t.bh) * t.bw + 2)) * 2;
  };
  return search_plans(T, mma_tile_sequence(s), budgets(dl), oct_max,
                      [&](const TileGeom& t, int64_t budget, int64_t oct, int64_t tt) {
    if (tt != T || t.bw > kThreads || bytes_of(t, oct, 1) > budget) return false;  // stage_box_mma: bw <= threads
    int64_t cch = 1;
    while (cch < std::min<int64_t>(Cg, 16) && bytes_of(t, oct, cch + 1) <= budget) ++cch;
    const bool shared = odd_square && oct >= 2;
    const int64_t rows = mma_q_rows(static_cast<int>(oct), static_cast<int>(T), shared);
    if (cch * rows * rows >= (int64_t(1) << 31)) return false;  // stage_packed_q's div_by_magic range
    FwdCfg& c = plan->cfg;
    set_tile(&c, t);
    c.oct = static_cast<int>(oct);
    c.n_ot = static_cast<int>(ceil_div(Og, oct));
    c.cch = static_cast<int>(cch);
    c.tt = static_cast<int>(T);
    c.off_beta = 0;
    c.off_box = static_cast<int>(align_up(cch * mma_q_chunk(ks, static_cast<int>(oct), shared), 8));
    c.off_y = 0;
    c.q_rows = static_cast<int>(rows);
    c.q_shared = shared ? 1 : 0;
    c.q_rows_m = div_magic(static_cast<unsigned>(rows));
    c.q_tr_m = div_magic(static_cast<unsigned>(std::max<int64_t>(1, shared ? T - 1 : T)));
    c.items = s.N * s.groups * c.n_ot * t.tiles_h * t.tiles_w;
    plan->static_taps = false;
    plan->mma = true;
    plan->mma_ks = ks;
    plan->mma_tail = mma_tail_of(T);
    plan->q_last_shared = shared;
    plan->q_pack_elems = s.groups * c.n_ot * Cg * rows * mma_k(ks);
    plan->smem_bytes = static_cast<int>(bytes_of(t, oct, cch));
    plan->use_int64 = false;
    return true;
  });
}

// How grad_input leaves the blocks of a tile plan (scalar grad_input and fused kernels):
// plain stores when one tile covers the image (no overlap between blocks), else atomicAdd,
// or (deterministic) per-tile boxes that a gather kernel sums in a fixed order. Returns
// the workspace size in elements.
int64_t plan_dx_reduction(const AdaptiveConvShape& s, const TileGeom& t, bool deterministic, BackwardPlan* plan) {
  if (t.tiles_h * t.tiles_w == 1) {
    plan->dx_mode = DxMode::kStore;
    plan->dx_zero_init = true;  // input positions outside the box stay zero
    return 0;
  }
  if (deterministic) {
    plan->dx_mode = DxMode::kWorkspace;
    plan->dx_zero_init = false;  // the gather kernel writes every element
    return s.N * t.tiles_h * t.tiles_w * s.C * int64_t(t.bh) * t.bw;
  }
  plan->dx_mode = DxMode::kAtomic;
  plan->dx_zero_init = true;
  return 0;
}

// Splits of the grad_weight reduction: enough blocks (base x splits) to fill the GPU a few
// times over, each split adding one partial per entry (capped at 256 MB of workspace in
// deterministic mode); then how the partials leave: plain stores (one split), double
// atomicAdd, or (deterministic) a per-split workspace reduced in a fixed order.
void plan_dw_reduction(int64_t base, int64_t work, int sms, bool deterministic, int64_t E, int64_t Eb,
                       BackwardPlan* plan, int64_t* dw_ws, int64_t* dkb_ws) {
  int64_t splits = std::max<int64_t>(1, ceil_div(4 * int64_t(sms), std::max<int64_t>(base, 1)));
  splits = std::min<int64_t>(splits, std::max<int64_t>(work, 1));
  if (deterministic) {
    const int64_t cap = std::max<int64_t>(1, (int64_t(256) << 20) / (8 * std::max<int64_t>(E + Eb, 1)));
    splits = std::min(splits, cap);
  }
  plan->w_splits = splits;
  if (splits == 1) {
    plan->dw_mode = DwMode::kStore;
    plan->dw_zero_init = work == 0;
  } else if (deterministic) {
    plan->dw_mode = DwMode::kWorkspace;
    plan->dw_zero_init = false;
    *dw_ws = splits * E;
    *dkb_ws = splits * Eb;
  } else {
    plan->dw_mode = DwMode::kAtomic;
    plan->dw_zero_init = true;
  }
}

// The fused tensor-core backward (kernels/backward_mma.cuh): float16/bfloat16, T + 1 <= 64,
// 32-bit indexing (workspaces included). Shared memory: the block's fp32 dQ accumulator
// [Og][T][T + 1] (need_weight), Q [oct][16 ks][16 ks + 8], the im2col [Pp][16 ks + 8], the
// shared last-tap dsigma [8][Pp + 8] (need_weight) and dsigma [oct][Pp][16 ks + 8] (16-bit,
// need_weight), which dX [T][Pp] (fp32, need_input) overlays. Returns false when it does not
// apply or nothing fits (the caller then plans the scalar kernels).
bool plan_backward_mma(const AdaptiveConvShape& s, const DevLimits& dl, bool need_input, bool need_weight,
                       bool deterministic, BackwardPlan* plan) {
  const int64_t T = s.kH * s.kW, Cg = s.C / s.groups, Og = s.O / s.groups;
  if (!dl.tensor_cores || T + 1 > mma_k(kMmaMaxKs) || Og < 1 || Cg < 1) return false;
  const int64_t ks = ceil_div(T + 1, 16);
  if (!has_mma_variant(static_cast<int>(ks), mma_tail_of(T))) return false;
  const int64_t row = mma_row(static_cast<int>(ks)), kk = mma_k(static_cast<int>(ks));
  const int64_t dq_bytes = need_weight ? align_up(Og * T * (T + 1) * 4, 16) : 0;
  const int64_t oct_max = std::max<int64_t>(1, std::min<int64_t>(Og, kMmaOct));
  int64_t off_q = 0, off_col = 0, off_dl = 0, off_ds = 0;
  auto bytes_of = [&](const TileGeom& t, int64_t oct) {
    const int64_t pp = align_up(int64_t(t.toh) * t.tow, 16);
    off_q = dq_bytes;
    off_col = off_q + align_up(oct * kk * row * 2, 16);
    off_dl = off_col + align_up(pp * row * 2, 16);
    off_ds = off_dl + (need_weight ? align_up(kMmaOct * (pp + 8) * 2, 16) : 0);
    return off_ds + align_up(std::max(need_weight ? oct * pp * row * 2 : 0, need_input ? T * pp * 4 : 0), 16);
  };
  MmaBackwardPlan m;
  TileGeom tile;
  const bool found = search_plans(T, tile_sequence(s, kMmaPixels), bwd_mma_budgets(dl), oct_max,
                                  [&](const TileGeom& t, int64_t budget, int64_t oct, int64_t tt) {
    if (tt != T || bytes_of(t, oct) > budget) return false;
    tile = t;
    m.cfg.oct = static_cast<int>(oct);
    m.cfg.rounds = static_cast<int>(ceil_div(Og, oct));
    m.smem = static_cast<int>(bytes_of(t, oct));
    m.cfg.off_q = static_cast<int>(off_q);
    m.cfg.off_col = static_cast<int>(off_col);
    m.cfg.off_dl = static_cast<int>(off_dl);
    m.cfg.off_ds = static_cast<int>(off_ds);
    return true;
  });
  if (!found) return false;
  const TileGeom& t = tile;
  const int64_t work = s.N * t.tiles_h * t.tiles_w;
  const int64_t E = s.O * Cg * T * T, Eb = s.O * Cg * T;
  const int64_t dx_ws = need_input ? plan_dx_reduction(s, t, deterministic, plan) : 0;
  int64_t dw_ws = 0, dkb_ws = 0;
  // Blocks = C x splits; without grad_weight the splits only spread the tiles over the SMs
  // (no partials: E = 0 keeps them uncapped, and the mode is unused).
  plan_dw_reduction(s.C, work, dl.sms, deterministic && need_weight, need_weight ? E : 0, need_weight ? Eb : 0,
                    plan, &dw_ws, &dkb_ws);
  if (!need_weight) {
    plan->dw_mode = DwMode::kStore;
    plan->dw_zero_init = false;
  }
  if (needs_int64({s.N * s.C * s.H * s.W, s.N * s.O * s.Ho * s.Wo, E, dx_ws, dw_ws,
                   int64_t(t.tiles_h) * t.tiles_w * s.N * (int64_t(t.bh) * t.bw)})) {
    return false;
  }
  set_tile(&m.cfg, t);
  set_tile(&m.gather, t);
  m.cfg.Pp = static_cast<int>(align_up(m.cfg.P, 16));
  m.cfg.splits = static_cast<int>(plan->w_splits);
  m.cfg.work_items = static_cast<int>(work);
  m.cfg.dx_mode = static_cast<int>(plan->dx_mode);
  m.cfg.dw_mode = static_cast<int>(plan->dw_mode);
  m.cfg.items = s.C * plan->w_splits;
  m.grads = (need_input ? kBwdInput : 0) | (need_weight ? kBwdWeight : 0);
  m.ks = static_cast<int>(ks);
  m.tail = mma_tail_of(T);
  plan->need_input = need_input;
  plan->need_weight = need_weight;
  plan->deterministic = deterministic;
  plan->dx_ws_elems = dx_ws;
  plan->dw_ws_elems = dw_ws;
  plan->dkb_ws_elems = dkb_ws;
  plan->use_int64 = false;
  plan->kernels = m;
  return true;
}

}  // namespace

bool plan_forward(DType dtype, const AdaptiveConvShape& s, const DeviceLimits& limits, ForwardPlan* plan,
                  std::string* why, bool allow_mma) {
  if (!check_ranges(s, why)) {
    *why += " (" + shape_text(s) + ")";
    return false;
  }
  const int64_t Cg0 = s.C / s.groups;
  const bool use_int64 = needs_int64({s.N * s.C * s.H * s.W, s.N * s.O * s.Ho * s.Wo,
                                      s.O * Cg0 * s.kH * s.kW * s.kH * s.kW});
  // Compile-time-size kernels exist for 32-bit indexing and the non-float64 types only.
  const bool allow_static = !use_int64 && dtype != DType::kFloat64;
  const DevLimits dl = dev_limits(limits);
  const int64_t es = esize_of(dtype), vec = 16 / es;
  const int64_t T = s.kH * s.kW, Tp = align_up(T, vec);
  const int64_t Cg = s.C / s.groups, Og = s.O / s.groups;
  const int64_t oct_max = std::max<int64_t>(1, std::min<int64_t>(Og, 8));
  *plan = ForwardPlan();
  plan->geom = make_geom(s, vec);
  const bool sixteen_bit = dtype == DType::kFloat16 || dtype == DType::kBFloat16;
  if (allow_mma && sixteen_bit && !use_int64 && dl.tensor_cores && plan_forward_mma(s, dl, plan)) return true;
  const auto tiles = tile_sequence(s);
  const auto bud = budgets(dl);

  // Elements: Q | beta | box | y, each region 16-byte aligned.
  auto layout = [&](const TileGeom& t, int64_t oct, int64_t cch, int64_t tt, int64_t* ob,
                    int64_t* ox, int64_t* oy) {
    const int64_t P = int64_t(t.toh) * t.tow;
    *ob = oct * cch * tt * Tp;
    *ox = *ob + align_up(oct * cch * tt, vec);
    *oy = *ox + align_up(cch * int64_t(t.bh) * t.bw, vec);
    return (*oy + oct * P) * es;
  };

  const bool found = search_plans(T, tiles, bud, oct_max, [&](const TileGeom& t, int64_t budget, int64_t oct, int64_t tt) {
    int64_t ob, ox, oy;
    if (layout(t, oct, 1, tt, &ob, &ox, &oy) > budget) return false;
    int64_t cch = 1;
    if (tt == T) {  // channel chunks only when whole Q rows are staged
      while (cch < std::min<int64_t>(Cg, 16) && layout(t, oct, cch + 1, tt, &ob, &ox, &oy) <= budget) ++cch;
    }
    const int64_t bytes = layout(t, oct, cch, tt, &ob, &ox, &oy);
    FwdCfg& c = plan->cfg;
    set_tile(&c, t);
    c.oct = static_cast<int>(oct);
    c.n_ot = static_cast<int>(ceil_div(Og, oct));
    c.cch = static_cast<int>(cch);
    c.tt = static_cast<int>(tt);
    c.off_beta = static_cast<int>(ob);
    c.off_box = static_cast<int>(ox);
    c.off_y = static_cast<int>(oy);
    c.items = s.N * s.groups * c.n_ot * t.tiles_h * t.tiles_w;
    plan->static_taps = allow_static && static_size(s) && tt == T;
    plan->smem_bytes = static_cast<int>(bytes);
    plan->use_int64 = use_int64;
    return true;
  });
  if (found) return true;
  *why = "the dilated kernel is too large for the shared memory of this GPU (not even a 1x1 tile fits; " +
         shape_text(s) + ")";
  return false;
}

namespace {

bool plan_backward_impl(DType dtype, const AdaptiveConvShape& s, bool need_input, bool need_weight,
                        bool deterministic, bool allow_static, const DevLimits& dl, BackwardPlan* plan,
                        std::string* why) {
  const int64_t es = esize_of(dtype), vec = 16 / es;
  const int64_t T = s.kH * s.kW, Tp = align_up(T, vec);
  const int64_t Cg = s.C / s.groups, Og = s.O / s.groups;
  const auto tiles = tile_sequence(s);
  const auto bud = budgets(dl);
  plan->need_input = need_input;
  plan->need_weight = need_weight;
  plan->deterministic = deterministic;
  int64_t dx_ws = 0, dw_ws = 0, dkb_ws = 0;
  const int64_t E = s.O * Cg * T * T, Eb = s.O * Cg * T;
  ScalarBackwardPlan sp;

  if (need_input) {
    const int64_t oq_max = std::max<int64_t>(1, std::min<int64_t>(Og, 8));
    TileGeom tile;
    const bool found = search_plans(T, tiles, bud, oq_max, [&](const TileGeom& t, int64_t budget, int64_t oq, int64_t tt) {
      const int64_t P = int64_t(t.toh) * t.tow, box = int64_t(t.bh) * t.bw;
      const bool st = allow_static && static_size(s) && tt == T;
      const int64_t ob = oq * tt * Tp;
      const int64_t ox = ob + align_up(oq * tt, vec);
      const int64_t od = ox + align_up(box, vec);
      const int64_t ot = od + align_up(box, vec);
      const int64_t op = ot + P * Tp;
      const int64_t bytes = (op + (st ? 0 : P * Tp)) * es;
      if (bytes > budget) return false;
      tile = t;
      DxCfg& c = sp.dx;
      c.oq = static_cast<int>(oq);
      c.tt = static_cast<int>(tt);
      c.off_beta = static_cast<int>(ob);
      c.off_box = static_cast<int>(ox);
      c.off_dbox = static_cast<int>(od);
      c.off_dxt = static_cast<int>(ot);
      c.off_dxp = static_cast<int>(op);
      sp.dx_static = st;
      sp.dx_smem = static_cast<int>(bytes);
      return true;
    });
    if (!found) {
      *why = "the dilated kernel is too large for the shared memory of this GPU (grad_input; " + shape_text(s) + ")";
      return false;
    }
    dx_ws = plan_dx_reduction(s, tile, deterministic, plan);  // one block per (n, c, tile)
    set_tile(&sp.dx, tile);
    sp.dx.mode = static_cast<int>(plan->dx_mode);
    sp.dx.items = s.N * s.C * tile.tiles_h * tile.tiles_w;
  }

  if (need_weight) {
    const int64_t oq_max = std::max<int64_t>(1, std::min<int64_t>(Og, 32));
    TileGeom tile;
    const bool found = search_plans(T, tiles, bud, oq_max, [&](const TileGeom& t, int64_t budget, int64_t oq, int64_t tt) {
      const int64_t P = int64_t(t.toh) * t.tow, box = int64_t(t.bh) * t.bw;
      const bool st = allow_static && static_size(s) && tt == T;
      const int64_t aw = dw_columns(st ? static_cast<int>(s.kH) : 0);
      const int64_t ncg = ceil_div(T, aw);
      const int64_t jobs = oq * tt * ncg;
      if (jobs > kThreads) return false;
      const int64_t ks = kThreads / jobs;
      const int64_t rs = (oq * tt) | 1;  // odd row stride: conflict-free dsigma writes
      const int64_t ob = oq * tt * Tp;
      const int64_t ox = ob + align_up(oq * tt, vec);
      const int64_t oc = ox + align_up(box, vec);
      const int64_t od = oc + P * Tp;
      const int64_t tail = std::max((P * Tp + P * rs) * es, ks * jobs * (aw + 1) * 8);
      const int64_t bytes = oc * es + align_up(tail, 16);
      if (bytes > budget) return false;
      tile = t;
      DwCfg& c = sp.dw;
      c.oq = static_cast<int>(oq);
      c.tt = static_cast<int>(tt);
      c.ncg = static_cast<int>(ncg);
      c.jobs = static_cast<int>(jobs);
      c.ks = static_cast<int>(ks);
      c.rs = static_cast<int>(rs);
      c.off_beta = static_cast<int>(ob);
      c.off_box = static_cast<int>(ox);
      c.off_xcol = static_cast<int>(oc);
      c.off_ds = static_cast<int>(od);
      sp.dw_aw = static_cast<int>(aw);
      sp.dw_static = st;
      sp.dw_smem = static_cast<int>(bytes);
      return true;
    });
    if (!found) {
      *why = "the dilated kernel is too large for the shared memory of this GPU (grad_weight; " + shape_text(s) + ")";
      return false;
    }
    DwCfg& c = sp.dw;
    set_tile(&c, tile);
    c.n_ot = static_cast<int>(ceil_div(Og, c.oq));
    c.n_tc = static_cast<int>(ceil_div(T, c.tt));
    const int64_t base = int64_t(c.n_ot) * c.n_tc * s.C;
    c.work_items = s.N * tile.tiles_h * tile.tiles_w;
    plan_dw_reduction(base, c.work_items, dl.sms, deterministic, E, Eb, plan, &dw_ws, &dkb_ws);
    c.mode = static_cast<int>(plan->dw_mode);
    c.splits = plan->w_splits;
    c.items = base * c.splits;
  }

  plan->dx_ws_elems = dx_ws;
  plan->dw_ws_elems = dw_ws;
  plan->dkb_ws_elems = dkb_ws;
  plan->use_int64 = needs_int64({s.N * s.C * s.H * s.W, s.N * s.O * s.Ho * s.Wo, E, dx_ws, dw_ws});
  plan->kernels = sp;
  return true;
}

}  // namespace

bool plan_backward(DType dtype, const AdaptiveConvShape& s, bool need_input, bool need_weight,
                   bool deterministic, const DeviceLimits& limits, BackwardPlan* plan, std::string* why,
                   bool allow_mma) {
  if (!check_ranges(s, why)) {
    *why += " (" + shape_text(s) + ")";
    return false;
  }
  const DevLimits dl = dev_limits(limits);
  const bool sixteen_bit = dtype == DType::kFloat16 || dtype == DType::kBFloat16;
  const int64_t E = s.O * (s.C / s.groups) * s.kH * s.kW * s.kH * s.kW;
  // Every plan: the geometry and the sizes of the gather / split reduction.
  auto finish = [&] {
    plan->geom = make_geom(s, 16 / esize_of(dtype));
    plan->dx_elems = s.N * s.C * s.H * s.W;
    plan->dkb_elems = s.O * (s.C / s.groups) * s.kH * s.kW;
    plan->dw_elems = E;
    return true;
  };
  *plan = BackwardPlan();
  if (allow_mma && sixteen_bit && (need_input || need_weight)) {
    if (plan_backward_mma(s, dl, need_input, need_weight, deterministic, plan)) return finish();
    *plan = BackwardPlan();
  }
  const bool big = needs_int64({s.N * s.C * s.H * s.W, s.N * s.O * s.Ho * s.Wo, E});
  // Compile-time-size kernels exist for 32-bit indexing and the non-float64 types only;
  // the workspaces can push a problem to 64-bit indexing, so re-plan without them then.
  if (!plan_backward_impl(dtype, s, need_input, need_weight, deterministic,
                          !big && dtype != DType::kFloat64, dl, plan, why)) {
    return false;
  }
  const ScalarBackwardPlan& sp = std::get<ScalarBackwardPlan>(plan->kernels);
  if (plan->use_int64 && (sp.dx_static || sp.dw_static)) {
    *plan = BackwardPlan();
    if (!plan_backward_impl(dtype, s, need_input, need_weight, deterministic, false, dl, plan, why)) return false;
    plan->use_int64 = true;  // keep the wide indices even if the generic plan's workspaces shrank
  }
  return finish();
}

}  // namespace cuda
}  // namespace adaptive_conv_ext
