// The kernels' VNNI code paths (BITZERO_DOT 1: AVX-VNNI, 2: AVX-512 VNNI) run on a CPU without
// VNNI: each vpdpbusd is emulated exactly with AVX2 (u8 x s8 products widened to int16, pair sums by
// madd, then the sums of four), and ternary_tile.inc is compiled once more per path for AVX2 alone.
// Every path is compared with the scalar kernels on random problems of SmolLM2's shapes, odd K
// included; exit status 1 on any difference beyond float summation order. Built and run by
// tests/kernels/test_vnni_emulated.py with -DKSRC and -DKTILE naming the kernel sources.
#include <immintrin.h>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <random>
#include <vector>
#include <cmath>
#include <algorithm>
__attribute__((target("avx2"))) static inline __m256i emu256(__m256i src, __m256i a, __m256i b) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i a_lo = _mm256_unpacklo_epi8(a, zero), a_hi = _mm256_unpackhi_epi8(a, zero);
  const __m256i b_lo = _mm256_srai_epi16(_mm256_unpacklo_epi8(zero, b), 8), b_hi = _mm256_srai_epi16(_mm256_unpackhi_epi8(zero, b), 8);
  return _mm256_add_epi32(src, _mm256_hadd_epi32(_mm256_madd_epi16(a_lo, b_lo), _mm256_madd_epi16(a_hi, b_hi)));
}
__attribute__((target("avx2"))) static inline __m128i emu128(__m128i src, __m128i a, __m128i b) {
  const __m128i zero = _mm_setzero_si128();
  const __m128i a_lo = _mm_unpacklo_epi8(a, zero), a_hi = _mm_unpackhi_epi8(a, zero);
  const __m128i b_lo = _mm_srai_epi16(_mm_unpacklo_epi8(zero, b), 8), b_hi = _mm_srai_epi16(_mm_unpackhi_epi8(zero, b), 8);
  return _mm_add_epi32(src, _mm_hadd_epi32(_mm_madd_epi16(a_lo, b_lo), _mm_madd_epi16(a_hi, b_hi)));
}
#undef _mm256_dpbusd_avx_epi32
#undef _mm_dpbusd_avx_epi32
#undef _mm256_dpbusd_epi32
#undef _mm_dpbusd_epi32
#define _mm256_dpbusd_avx_epi32(s, a, b) emu256(s, a, b)
#define _mm_dpbusd_avx_epi32(s, a, b) emu128(s, a, b)
#define _mm256_dpbusd_epi32(s, a, b) emu256(s, a, b)
#define _mm_dpbusd_epi32(s, a, b) emu128(s, a, b)
#include KSRC
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace emu1 {
#define BITZERO_DOT 1
#include KTILE
#undef BITZERO_DOT
}
namespace emu2 {
#define BITZERO_DOT 2
#include KTILE
#undef BITZERO_DOT
}
#pragma GCC pop_options

static int failures = 0;
static void check(const char* what, const std::vector<float>& got, const std::vector<float>& want, double tol, bool exact_ok = false) {
  double worst = 0, scale = 1e-12;
  for (size_t i = 0; i < want.size(); ++i) { worst = std::max(worst, (double)std::fabs(got[i] - want[i])); scale = std::max(scale, (double)std::fabs(want[i])); }
  bool ok = worst <= tol * scale;
  if (!ok) ++failures;
  printf("%-44s %s (max |diff| %.3g, max |y| %.3g)\n", what, ok ? "ok" : "FAIL", worst, scale);
}

int main() {
  std::mt19937 rng(7);
  // Ternary: shapes (K, ternary rows, critical rows), tokens 1 (decode), 4 and 11 (prompt groups and singles)
  const int64_t shapes[][3] = {{576, 96, 10}, {1536, 40, 9}, {577, 33, 5}, {100, 20, 3}, {64, 7, 2}};
  for (auto& s : shapes) for (int64_t m : {1, 4, 11}) {
    Problem p{};
    p.k = s[0]; p.kp = (p.k + 63) / 64 * 64; p.blocks = p.kp / 128; p.half = p.kp % 128 != 0; p.stride = p.kp / 4; p.m = m;
    p.n_ternary = s[1]; p.n_critical = s[2]; p.n_out = s[1] + s[2];
    std::vector<uint8_t> codes(p.n_ternary * p.stride);
    for (int64_t r = 0; r < p.n_ternary; ++r) for (int64_t i = 0; i < p.kp; ++i) {
      const int64_t b = i / 128, t = i % 128, width = b < p.blocks ? 32 : 16;
      const uint8_t c = i < p.k ? rng() % 3 : 1;
      codes[r * p.stride + b * 32 + t % width] |= c << (2 * (t / width));
    }
    std::vector<float> gamma(p.n_ternary); for (auto& g : gamma) g = 0.01f + (rng() % 100) * 1e-3f;
    std::vector<uint16_t> crit(p.n_critical * p.k); for (auto& c : crit) c = 0x2000 | (rng() & 0x83ff);
    std::vector<float> x(m * p.k); for (auto& v : x) v = ((int)(rng() % 2001) - 1000) * 0.01f;
    std::vector<int8_t> q(m * p.kp, 0); std::vector<float> qf(m * p.kp, 0.f), sc(m); std::vector<int32_t> qs(m);
    for (int64_t t = 0; t < m; ++t) scalar::quantize_token(x.data() + t * p.k, p.k, q.data() + t * p.kp, qf.data() + t * p.kp, &sc[t], &qs[t]);
    p.q = q.data(); p.qf = qf.data(); p.qsum = qs.data(); p.scale = sc.data(); p.codes = codes.data(); p.gamma = gamma.data(); p.critical = crit.data();
    const int64_t tasks = (p.n_ternary + 15) / 16 + (p.n_critical + 15) / 16;
    std::vector<float> want(m * p.n_out), got1(m * p.n_out), got2(m * p.n_out), got0(m * p.n_out);
    p.y = want.data(); for (int64_t t = 0; t < tasks; ++t) scalar::run_task(p, t);
    p.y = got1.data(); for (int64_t t = 0; t < tasks; ++t) emu1::run_task(p, t);
    p.y = got2.data(); for (int64_t t = 0; t < tasks; ++t) emu2::run_task(p, t);
    p.y = got0.data(); for (int64_t t = 0; t < tasks; ++t) avx2::run_task(p, t);
    char name[96];
    // ternary rows are integers times the same scale: equal; critical rows: float sums in another order
    snprintf(name, sizeof name, "ternary K=%lld rows %lld+%lld m=%lld avxvnni", (long long)p.k, (long long)s[1], (long long)s[2], (long long)m); check(name, got1, want, 1e-5);
    snprintf(name, sizeof name, "ternary K=%lld rows %lld+%lld m=%lld avx512vnni", (long long)p.k, (long long)s[1], (long long)s[2], (long long)m); check(name, got2, want, 1e-5);
    bool same = true; for (int64_t i = 0; i < m * p.n_ternary; ++i) same &= got1[i] == got0[i] && got2[i] == got0[i];
    if (!same) { ++failures; printf("  ternary rows differ between avx2 and the VNNI paths: FAIL\n"); }
  }
  // Int8MatMul: codes (n, blocks, 32) uint8 in [1, 255], scales; tokens 1, 4, 6
  for (int64_t k : {576, 37, 96}) for (int64_t m : {1, 4, 6}) {
    Int8Problem p{}; p.blocks = (k + 31) / 32; p.n = 70; p.m = m;
    std::vector<uint8_t> codes(p.n * p.blocks * 32); for (int64_t r = 0; r < p.n; ++r) for (int64_t i = 0; i < p.blocks * 32; ++i) codes[r * p.blocks * 32 + i] = i < k ? 1 + rng() % 255 : 128;
    std::vector<float> scales(p.n * p.blocks); for (auto& v : scales) v = 1e-3f * (1 + rng() % 100);
    std::vector<float> x(m * k); for (auto& v : x) v = ((int)(rng() % 2001) - 1000) * 0.01f;
    std::vector<int8_t> q(m * p.blocks * 32); std::vector<float> qsc(4 * m * p.blocks), xs(m * p.blocks), res(m * p.blocks);
    for (int64_t t = 0; t < m; ++t) scalar::quantize_blocks(x.data() + t * k, k, p.blocks, q.data() + t * p.blocks * 32, qsc.data() + 4 * t * p.blocks, xs.data() + t * p.blocks, res.data() + t * p.blocks);
    p.q = q.data(); p.qscale = qsc.data(); p.codes = codes.data(); p.scales = scales.data();
    std::vector<float> want(m * p.n), got1(m * p.n), got2(m * p.n);
    const int64_t tasks = (p.n + 15) / 16;
    p.y = want.data(); for (int64_t t = 0; t < tasks; ++t) scalar::int8_task(p, t);
    p.y = got1.data(); for (int64_t t = 0; t < tasks; ++t) emu1::int8_task(p, t);
    p.y = got2.data(); for (int64_t t = 0; t < tasks; ++t) emu2::int8_task(p, t);
    char name[96];
    snprintf(name, sizeof name, "int8 K=%lld m=%lld avxvnni", (long long)k, (long long)m); check(name, got1, want, 1e-5);
    snprintf(name, sizeof name, "int8 K=%lld m=%lld avx512vnni", (long long)k, (long long)m); check(name, got2, want, 1e-5);
  }
  // Int4MatMul: each path with its own activation layout (its quantize_blocks), tokens 1, 4 and 6
  for (int64_t k : {576, 70, 20}) for (int64_t m : {1, 4, 6}) {
    Int4Problem p{}; p.blocks = (k + 63) / 64 * 2; p.n = 33; p.m = m;
    const int64_t tiles = (p.n + 15) / 16, width = p.blocks * 32;
    std::vector<uint8_t> codes(p.n * p.blocks * 16); for (auto& c : codes) c = rng() & 0xff;
    std::vector<uint16_t> scales(tiles * p.blocks * 16), mins(scales.size());
    for (auto& v : scales) v = 0x1c00 | (rng() & 0x3ff);
    for (auto& v : mins) v = 0x9c00 | (rng() & 0x3ff);
    std::vector<float> x(m * k); for (auto& v : x) v = ((int)(rng() % 2001) - 1000) * 0.01f;
    p.codes = codes.data(); p.scales = scales.data(); p.mins = mins.data();
    std::vector<float> want(m * p.n), got1(m * p.n), got2(m * p.n);
    auto run = [&](BlockQuantizeFn quantize, Int4Fn task, std::vector<float>& y) {
      std::vector<int8_t> q(m * width); std::vector<float> qsc(4 * m * p.blocks), xs(m * p.blocks), res(m * p.blocks);
      for (int64_t t = 0; t < m; ++t) quantize(x.data() + t * k, k, p.blocks, q.data() + t * width, qsc.data() + 4 * t * p.blocks, xs.data() + t * p.blocks, res.data() + t * p.blocks);
      p.q = q.data(); p.qscale = qsc.data(); p.xsum = xs.data(); p.residual = res.data(); p.y = y.data();
      for (int64_t t = 0; t < tiles; ++t) task(p, t);
    };
    run(scalar::quantize_blocks, scalar::int4_task, want);
    run(emu1::quantize_blocks, emu1::int4_task, got1);
    run(emu2::quantize_blocks, emu2::int4_task, got2);
    char name[96];
    snprintf(name, sizeof name, "int4 K=%lld m=%lld avxvnni", (long long)k, (long long)m); check(name, got1, want, 1e-5);
    snprintf(name, sizeof name, "int4 K=%lld m=%lld avx512vnni", (long long)k, (long long)m); check(name, got2, want, 1e-5);
  }
  printf("%s\n", failures ? "FAILURES" : "all VNNI paths agree with the scalar kernels");
  return failures != 0;
}
