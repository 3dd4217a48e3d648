// TernaryMatMul (domain com.bitzero): a BitNet b1.58 linear layer as one onnxruntime custom op.
//
//   Y[..., N] = TernaryMatMul(X[..., K] float, codes uint8, gamma float[N_t], critical float16[N_c, K]?,
//                             columns int32[N]?)
//
// With the attribute gated=1, X is [..., 2K], the gate and up halves of a SwiGLU feed-forward, and the
// layer's input is silu(gate) * up (the Split, Sigmoid and two Muls before down_proj, fused).
//
// Per token, X is quantized to int8 exactly as BitLinear does it (s = 127 / max(absmax, 1e-5),
// q = clip(round_half_even(x * s), -128, 127)); the N_t ternary rows are integer dot products of q
// with codes in {-1, 0, 1}, rescaled by the row's gamma / s; the N_c critical rows (full-precision
// channels, stored as fp16) multiply q / s in float. Row i of the computed rows (ternary rows first,
// then critical rows) is written to output column columns[i] (identity when absent), so a layer's
// critical channels take their places without a Concat and a Gather.
//
// Code layout (bitzero.export.packing.kernel_codes): K is padded to a multiple of 64 (Kp); each row
// is Kp / 128 blocks of 32 bytes, then, where Kp is an odd multiple of 64, a half block of 16 bytes.
// Byte j of block b holds the codes of k = 128 b + 32 s + j for s = 0..3 in bits 2s..2s+1 (in the
// half block: k = 128 B + 16 s + j), stored as code + 1 in {0, 1, 2} (padding: 1). So four shifts
// and masks turn one 32-byte load into four vectors of unsigned codes lined up with four contiguous
// 32-byte loads of activations (the layout of bitnet.cpp's I2_S), and u8 x s8 multiply-adds give
// sum((c + 1) q) = sum(c q) + sum(q), the second term subtracted once per token.
//
// TableMatMul (same domain): Y[..., N] = X[..., K] float times (codes int8[N, K] * scales float[N])^T,
// an embedding-sized table (the tied lm_head) stored in int8 with one scale a row and multiplied in
// float: the table the student reads every token, at 8.0 bits a weight (onnxruntime's 8-bit
// MatMulNBits stores a float scale per 32, 9.0 bits, and rounds the activations to int8 per 32).
//
// Int4MatMul (same domain; gated=1 as TernaryMatMul's): Y[..., N] = X[..., K] float times W^T, W in
// 4-bit blocks of 32 along K as GGUF's Q4_1 stores them, w = scale * code + min: the teacher's
// projections restored exactly, at 5 bits a weight (bitzero.export.packing.Int4Weight.kernel_blocks).
// Inputs: codes uint8[N, B, 16],
// B = 2 ceil(K / 64) (blocks in pairs, the last padded with zero weights), byte j of a block holding
// code j in its low nibble and code 16 + j in its high one, so one 32-byte load and two masks line a
// pair's codes up with its activations; scales and mins float16[ceil(N / 16), B, 16], sixteen rows
// side by side. X is rounded to int8 per block of 32 (absmax / 127, as onnxruntime's MatMulNBits at
// accuracy_level 4), and each block computes what the MatMulNBits graph does: the int8 activations
// times the centred codes, scale * (code - 8), plus the float sum of its activations times the rest,
// min + 8 scale (MatMulNBits has no float zero point on its fast path: that graph adds the second
// term with an fp32 side matmul, 1 more bit a weight and four more nodes a projection).
//
// Int8MatMul (same domain): Y[..., N] = X[..., K] float times W^T, W in 8-bit blocks of 32 along K as
// MatMulNBits bits=8 stores them (codes uint8[N, B, 32], B = ceil(K / 32), w = scale * (code - 128),
// scales float[N, B]): the teacher's tied table as lm_head, read from the very initializers its
// embedding's GatherBlockQuantized reads. X is rounded to int8 per block of 32 as MatMulNBits does at
// accuracy_level 4, so the sums are the ones its graph computed before: as fast for one token, a
// quarter faster for four or more (a batch of replies decoded together).
//
// Instruction sets, chosen once per kernel from the CPU (or BITZERO_TERNARY_ISA = scalar | avx2 |
// avxvnni | avx512vnni, refused when the CPU lacks it): a portable scalar loop, AVX2 (+FMA, F16C),
// AVX-VNNI, AVX-512 VNNI. Rows are split in tiles of 16 over onnxruntime's intra-op thread pool.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "onnxruntime_c_api.h"

namespace {

constexpr int64_t kTileRows = 16;
constexpr int64_t kTableRows = 16;
constexpr int64_t kBlockCodes = 128;
constexpr int64_t kHalfCodes = 64;
constexpr int64_t kPrefetchBytes = 4096;
constexpr int64_t kInt4Block = 32;
constexpr float kInt4Zero = 8.0f;  // the codes' centre
constexpr float kQmax = 127.0f;
constexpr float kClamp = 1e-5f;
const OrtApi* g_api = nullptr;

struct Problem {
  const int8_t* q;        // (m, kp) int8 activations, zero beyond k
  const float* qf;        // (m, kp) the same as floats (for the critical rows)
  const int32_t* qsum;    // (m,) sum of each token's q
  const float* scale;     // (m,) each token's s
  const uint8_t* codes;   // (n_ternary, stride)
  const float* gamma;     // (n_ternary,)
  const uint16_t* critical;  // (n_critical, k) fp16 bits
  const int32_t* columns;    // (n_ternary + n_critical,) or null
  float* y;               // (m, n_out)
  int64_t m, k, kp, blocks, stride, n_ternary, n_critical, n_out;
  bool half;  // a 16-byte half block after the whole ones
  int64_t column(int64_t row) const { return columns ? columns[row] : row; }
};

struct Int4Problem {
  const int8_t* q;         // (m, blocks * 32) int8 activations, zero beyond k (laid out as the ISA reads them)
  const float* qscale;     // (m, blocks, 4) their scales, each four times (a pair's int32 lanes)
  const float* xsum;       // (m, blocks) float sums of the activations
  const float* residual;   // (m, blocks) what the int8 rounding left of them
  const uint8_t* codes;    // (n, blocks * 16)
  const uint16_t* scales;  // (ceil(n / 16), blocks, 16) fp16 bits: sixteen rows' side by side, block by block
  const uint16_t* mins;    // (ceil(n / 16), blocks, 16) fp16 bits
  float* y;                // (m, n)
  int64_t m, n, blocks;
};

struct Int8Problem {
  const int8_t* q;        // (m, blocks * 32) int8 activations in order, zero beyond k
  const float* qscale;    // (m, blocks, 4) their scales (each four times, as quantize_blocks writes them)
  const uint8_t* codes;   // (n, blocks, 32) code + 128
  const float* scales;    // (n, blocks)
  float* y;               // (m, n)
  int64_t m, n, blocks;
};

struct TableProblem {
  const float* x;        // (m, k)
  const int8_t* codes;   // (n, k)
  const float* scales;   // (n,)
  float* y;              // (m, n)
  int64_t m, k, n;
};

float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ffu;
  float value;
  if (exponent == 0) {
    value = std::ldexp(static_cast<float>(mantissa), -24);
  } else if (exponent == 31) {
    value = mantissa ? NAN : INFINITY;
  } else {
    value = std::ldexp(static_cast<float>(mantissa | 0x400u), static_cast<int>(exponent) - 25);
  }
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  bits |= sign;
  std::memcpy(&value, &bits, 4);
  return value;
}

namespace scalar {
void swiglu_token(const float* x, int64_t k, float* h) {
  for (int64_t i = 0; i < k; ++i) h[i] = x[i] / (1.0f + std::exp(-x[i])) * x[k + i];
}

void quantize_token(const float* x, int64_t k, int8_t* q, float* qf, float* scale, int32_t* sum) {
  float amax = 0.0f;
  for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float s = kQmax / std::max(amax, kClamp);
  int32_t sum_q = 0;
  for (int64_t i = 0; i < k; ++i) {
    const float v = std::min(std::max(std::nearbyint(x[i] * s), -kQmax - 1.0f), kQmax);
    q[i] = static_cast<int8_t>(v);
    if (qf) qf[i] = v;
    sum_q += static_cast<int32_t>(v);
  }
  *scale = s;
  *sum = sum_q;
}

void run_task(const Problem& p, int64_t task) {
  const int64_t ternary_tasks = (p.n_ternary + kTileRows - 1) / kTileRows;
  const bool ternary = task < ternary_tasks;
  const int64_t first = (ternary ? task : task - ternary_tasks) * kTileRows;
  const int64_t rows = std::min(kTileRows, (ternary ? p.n_ternary : p.n_critical) - first);
  for (int64_t m = 0; m < p.m; ++m) {
    const int8_t* q = p.q + m * p.kp;
    float* y = p.y + m * p.n_out;
    for (int64_t row = first; row < first + rows; ++row) {
      if (ternary) {
        int32_t dot = 0;
        const uint8_t* w = p.codes + row * p.stride;
        for (int64_t i = 0; i < p.kp; ++i) {
          const int64_t b = i / kBlockCodes, t = i % kBlockCodes;
          const int64_t width = b < p.blocks ? 32 : 16;  // codes a plane: 32, or 16 in the half block
          dot += static_cast<int32_t>((w[b * 32 + t % width] >> (2 * (t / width))) & 3) * q[i];
        }
        y[p.column(row)] = static_cast<float>(dot - p.qsum[m]) * p.gamma[row] / p.scale[m];
      } else {
        float dot = 0.0f;
        for (int64_t i = 0; i < p.k; ++i) dot += half_to_float(p.critical[row * p.k + i]) * p.qf[m * p.kp + i];
        y[p.column(p.n_ternary + row)] = dot / p.scale[m];
      }
    }
  }
}

void table_task(const TableProblem& p, int64_t task) {
  const int64_t first = task * kTableRows, last = std::min(first + kTableRows, p.n);
  for (int64_t m = 0; m < p.m; ++m)
    for (int64_t row = first; row < last; ++row) {
      float dot = 0.0f;
      for (int64_t i = 0; i < p.k; ++i) dot += static_cast<float>(p.codes[row * p.k + i]) * p.x[m * p.k + i];
      p.y[m * p.n + row] = dot * p.scales[row];
    }
}
void quantize_blocks(const float* x, int64_t k, int64_t blocks, int8_t* q, float* qscale, float* xsum, float* residual) {
  for (int64_t b = 0; b < blocks; ++b) {
    float amax = 0.0f, sum = 0.0f;
    for (int64_t i = b * kInt4Block; i < std::min(k, (b + 1) * kInt4Block); ++i) amax = std::max(amax, std::fabs(x[i])), sum += x[i];
    const float s = amax > 0.0f ? kQmax / amax : 0.0f;
    int32_t sum_q = 0;
    for (int64_t i = b * kInt4Block; i < (b + 1) * kInt4Block; ++i) {
      q[i] = i < k ? static_cast<int8_t>(std::nearbyint(x[i] * s)) : 0;
      sum_q += q[i];
    }
    for (int64_t j = 0; j < 4; ++j) qscale[4 * b + j] = amax / kQmax;
    xsum[b] = sum;
    residual[b] = sum - amax / kQmax * static_cast<float>(sum_q);
  }
}

void int4_task(const Int4Problem& p, int64_t task) {
  const int64_t first = task * kTileRows, last = std::min(first + kTileRows, p.n);
  for (int64_t m = 0; m < p.m; ++m)
    for (int64_t row = first; row < last; ++row) {
      float dots = 0.0f, rest = 0.0f;
      for (int64_t b = 0; b < p.blocks; ++b) {
        const uint8_t* packed = p.codes + (row * p.blocks + b) * 16;
        const int8_t* q = p.q + (m * p.blocks + b) * kInt4Block;
        int32_t dot = 0;
        for (int64_t j = 0; j < 16; ++j) dot += ((packed[j] & 0x0F) - 8) * q[j] + ((packed[j] >> 4) - 8) * q[16 + j];
        const int64_t at = ((row / kTileRows * p.blocks) + b) * kTileRows + row % kTileRows, token = m * p.blocks + b;
        const float scale = half_to_float(p.scales[at]);
        dots += scale * p.qscale[4 * token] * static_cast<float>(dot);
        rest += (half_to_float(p.mins[at]) + kInt4Zero * scale) * p.xsum[token];
      }
      p.y[m * p.n + row] = dots + rest;
    }
}

void int8_task(const Int8Problem& p, int64_t task) {
  const int64_t first = task * kTileRows, last = std::min(first + kTileRows, p.n);
  for (int64_t m = 0; m < p.m; ++m)
    for (int64_t row = first; row < last; ++row) {
      float sum = 0.0f;
      for (int64_t b = 0; b < p.blocks; ++b) {
        const uint8_t* w = p.codes + (row * p.blocks + b) * kInt4Block;
        const int8_t* q = p.q + (m * p.blocks + b) * kInt4Block;
        int32_t dot = 0;
        for (int64_t j = 0; j < kInt4Block; ++j) dot += (static_cast<int32_t>(w[j]) - 128) * q[j];
        sum += static_cast<float>(dot) * (p.scales[row * p.blocks + b] * p.qscale[4 * (m * p.blocks + b)]);
      }
      p.y[m * p.n + row] = sum;
    }
}
}  // namespace scalar

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace avx2 {
#define BITZERO_DOT 0
#include "ternary_tile.inc"
#undef BITZERO_DOT
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avxvnni")
namespace avxvnni {
#define BITZERO_DOT 1
#include "ternary_tile.inc"
#undef BITZERO_DOT
}  // namespace avxvnni
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")
namespace avx512vnni {
#define BITZERO_DOT 2
#include "ternary_tile.inc"
#undef BITZERO_DOT
}  // namespace avx512vnni
#pragma GCC pop_options

using TaskFn = void (*)(const Problem&, int64_t);
using TableFn = void (*)(const TableProblem&, int64_t);
using QuantizeFn = void (*)(const float*, int64_t, int8_t*, float*, float*, int32_t*);
using GateFn = void (*)(const float*, int64_t, float*);
using Int4Fn = void (*)(const Int4Problem&, int64_t);
using BlockQuantizeFn = void (*)(const float*, int64_t, int64_t, int8_t*, float*, float*, float*);
using Int8Fn = void (*)(const Int8Problem&, int64_t);

struct Isa {
  const char* name;
  GateFn swiglu;
  QuantizeFn quantize;
  TaskFn run;
  TableFn table;
  BlockQuantizeFn quantize_blocks;
  Int4Fn int4;
  Int8Fn int8;
  bool (*supported)();
};

bool has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"); }
bool has_avxvnni() { return has_avx2() && __builtin_cpu_supports("avxvnni"); }
bool has_avx512vnni() {
  return has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512vnni");
}
bool always() { return true; }

// Best first.
const Isa kIsas[] = {{"avx512vnni", avx512vnni::swiglu_token, avx512vnni::quantize_token, avx512vnni::run_task, avx512vnni::table_task, avx512vnni::quantize_blocks, avx512vnni::int4_task, avx512vnni::int8_task, has_avx512vnni},
                     {"avxvnni", avxvnni::swiglu_token, avxvnni::quantize_token, avxvnni::run_task, avxvnni::table_task, avxvnni::quantize_blocks, avxvnni::int4_task, avxvnni::int8_task, has_avxvnni},
                     {"avx2", avx2::swiglu_token, avx2::quantize_token, avx2::run_task, avx2::table_task, avx2::quantize_blocks, avx2::int4_task, avx2::int8_task, has_avx2},
                     {"scalar", scalar::swiglu_token, scalar::quantize_token, scalar::run_task, scalar::table_task, scalar::quantize_blocks, scalar::int4_task, scalar::int8_task, always}};

// The instruction set BITZERO_TERNARY_ISA names (null when the CPU lacks it or the name is unknown), else the best.
const Isa* choose_isa() {
  const char* wanted = std::getenv("BITZERO_TERNARY_ISA");
  for (const Isa& isa : kIsas) {
    if (wanted && *wanted) {
      if (std::strcmp(wanted, isa.name) == 0) return isa.supported() ? &isa : nullptr;
    } else if (isa.supported()) {
      return &isa;
    }
  }
  return nullptr;
}

struct Kernel {
  const Isa* isa;
  bool gated;  // X holds SwiGLU's gate and up halves
  const int32_t* checked_columns;  // the constant columns input, checked once when the kernel was created
};

template <typename P>
struct Work {
  const P* problem;
  void (*run)(const P&, int64_t);
};

template <typename P>
void run_parallel(void* data, size_t task) {
  const Work<P>* work = static_cast<const Work<P>*>(data);
  work->run(*work->problem, static_cast<int64_t>(task));
}

// Runs tasks 0..tasks-1 over onnxruntime's intra-op thread pool (inline when there is one).
template <typename P>
OrtStatus* run_tasks(OrtKernelContext* context, const P& problem, void (*run)(const P&, int64_t), int64_t tasks) {
  if (tasks == 1) {
    run(problem, 0);
    return nullptr;
  }
  Work<P> work{&problem, run};
  return g_api->KernelContext_ParallelFor(context, run_parallel<P>, static_cast<size_t>(tasks), 0, &work);
}

void prefetch_start(const void* data, int64_t bytes) {
  const char* start = static_cast<const char*>(data);
  for (int64_t line = 0; line < std::min(bytes, kPrefetchBytes); line += 64) __builtin_prefetch(start + line, 0, 0);
}

OrtStatus* fail(const std::string& message, const char* op = "TernaryMatMul") {
  return g_api->CreateStatus(ORT_INVALID_ARGUMENT, (std::string(op) + ": " + message).c_str());
}

// Shape of an input; null `value` gives an empty shape.
OrtStatus* shape_of(const OrtValue* value, std::vector<int64_t>& dims) {
  dims.clear();
  if (!value) return nullptr;
  OrtTensorTypeAndShapeInfo* info = nullptr;
  if (OrtStatus* status = g_api->GetTensorTypeAndShape(value, &info)) return status;
  size_t count = 0;
  OrtStatus* status = g_api->GetDimensionsCount(info, &count);
  if (!status) {
    dims.resize(count);
    status = g_api->GetDimensions(info, dims.data(), count);
  }
  g_api->ReleaseTensorTypeAndShapeInfo(info);
  return status;
}

template <typename T>
OrtStatus* data_of(const OrtValue* value, const T** out) {
  *out = nullptr;
  if (!value) return nullptr;
  void* data = nullptr;
  if (OrtStatus* status = g_api->GetTensorMutableData(const_cast<OrtValue*>(value), &data)) return status;
  *out = static_cast<const T*>(data);
  return nullptr;
}

#define BITZERO_TRY(expr)                     \
  do {                                        \
    if (OrtStatus* status_ = (expr)) return status_; \
  } while (0)

// The op's first `count` inputs (null where an optional one is absent) and their shapes (empty there).
OrtStatus* read_inputs(OrtKernelContext* context, size_t count, const OrtValue** inputs, std::vector<int64_t>* shapes) {
  size_t given = 0;
  BITZERO_TRY(g_api->KernelContext_GetInputCount(context, &given));
  for (size_t i = 0; i < count; ++i) {
    inputs[i] = nullptr;
    if (i < given) BITZERO_TRY(g_api->KernelContext_GetInput(context, i, &inputs[i]));
    BITZERO_TRY(shape_of(inputs[i], shapes[i]));
  }
  return nullptr;
}

// Tokens in an input of shape (..., K): the product of its leading dimensions.
int64_t tokens(const std::vector<int64_t>& x_shape) {
  int64_t m = 1;
  for (size_t i = 0; i + 1 < x_shape.size(); ++i) m *= x_shape[i];
  return m;
}

// The op's output (..., n) for an input (..., K), and where its floats go.
OrtStatus* output_rows(OrtKernelContext* context, const std::vector<int64_t>& x_shape, int64_t n, float** y) {
  std::vector<int64_t> y_shape(x_shape);
  y_shape.back() = n;
  OrtValue* output = nullptr;
  BITZERO_TRY(g_api->KernelContext_GetOutput(context, 0, y_shape.data(), y_shape.size(), &output));
  void* data = nullptr;
  BITZERO_TRY(g_api->GetTensorMutableData(output, &data));
  *y = static_cast<float*>(data);
  return nullptr;
}

// Each token's input width K: X's last dimension, or half of it for a gated input (gate, up).
OrtStatus* input_width(bool gated, const std::vector<int64_t>& x_shape, const char* op, int64_t* k) {
  *k = x_shape.back();
  if (!gated) return nullptr;
  if (*k % 2) return fail("a gated input must hold two halves (gate, up), got width " + std::to_string(*k), op);
  *k /= 2;
  return nullptr;
}

// Token m's input row of width k: X's own, or (`swiglu` given) silu(gate) * up of its halves,
// written into `buffer`.
const float* token_input(GateFn swiglu, const float* x, int64_t m, int64_t k, std::vector<float>& buffer) {
  if (!swiglu) return x + m * k;
  buffer.resize(static_cast<size_t>(k));
  swiglu(x + m * 2 * k, k, buffer.data());
  return buffer.data();
}

// Every token's int8 activations in blocks of 32 (laid out as `quantize` writes them for its
// kernel), their scales (four times each), float sums and what the rounding left of them: the
// inputs of Int4MatMul and Int8MatMul.
struct BlockActivations {
  std::vector<int8_t> q;
  std::vector<float> qscale, xsum, residual;
  BlockActivations(BlockQuantizeFn quantize, GateFn swiglu, const float* x, int64_t m, int64_t k, int64_t blocks)
      : q(static_cast<size_t>(m * blocks * kInt4Block)), qscale(static_cast<size_t>(4 * m * blocks)),
        xsum(static_cast<size_t>(m * blocks)), residual(xsum.size()) {
    std::vector<float> gated;
    for (int64_t t = 0; t < m; ++t) {
      const int64_t at = t * blocks;
      quantize(token_input(swiglu, x, t, k, gated), k, blocks, &q[at * kInt4Block], &qscale[4 * at], &xsum[at], &residual[at]);
    }
  }
};

// Whether `columns` is a permutation of 0..n-1 (each computed row lands in a column of its own).
OrtStatus* check_columns(const int32_t* columns, int64_t n) {
  std::vector<char> seen(static_cast<size_t>(n), 0);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t c = columns[i];
    if (c < 0 || c >= n || seen[c]) return fail("columns must be a permutation of 0..N-1");
    seen[c] = 1;
  }
  return nullptr;
}

OrtStatus* ORT_API_CALL compute(void* op_kernel, OrtKernelContext* context) {
  const Kernel* kernel = static_cast<const Kernel*>(op_kernel);
  const OrtValue* inputs[5];
  std::vector<int64_t> shapes[5];
  BITZERO_TRY(read_inputs(context, 5, inputs, shapes));
  const auto& [x_shape, codes_shape, gamma_shape, critical_shape, columns_shape] = shapes;
  if (x_shape.empty()) return fail("X must have at least one dimension (..., K)");
  Problem p{};
  BITZERO_TRY(input_width(kernel->gated, x_shape, "TernaryMatMul", &p.k));
  p.kp = (p.k + kHalfCodes - 1) / kHalfCodes * kHalfCodes;
  p.blocks = p.kp / kBlockCodes;
  p.half = p.kp % kBlockCodes != 0;
  p.stride = p.kp / 4;
  p.m = tokens(x_shape);
  if (codes_shape.size() != 2 || codes_shape[1] != p.stride)
    return fail("codes must be (N_ternary, ceil(K / 64) * 16) for K = " + std::to_string(p.k));
  p.n_ternary = codes_shape[0];
  if (gamma_shape.size() != 1 || gamma_shape[0] != p.n_ternary) return fail("gamma must hold one scale per ternary row");
  if (inputs[3] && (critical_shape.size() != 2 || critical_shape[1] != p.k)) return fail("critical rows must be (N_critical, K)");
  p.n_critical = inputs[3] ? critical_shape[0] : 0;
  p.n_out = p.n_ternary + p.n_critical;
  if (inputs[4] && (columns_shape.size() != 1 || columns_shape[0] != p.n_out)) return fail("columns must name one output column per row");
  BITZERO_TRY(data_of(inputs[1], &p.codes));
  BITZERO_TRY(data_of(inputs[2], &p.gamma));
  BITZERO_TRY(data_of(inputs[3], &p.critical));
  BITZERO_TRY(data_of(inputs[4], &p.columns));
  // The loops prefetch kPrefetchBytes ahead; ask for the weights they start on now, while the
  // activations are quantized (an op's first rows otherwise wait on memory line by line).
  prefetch_start(p.codes, p.n_ternary * p.stride);
  prefetch_start(p.critical, p.n_critical * p.k * 2);
  if (p.columns && p.columns != kernel->checked_columns) BITZERO_TRY(check_columns(p.columns, p.n_out));
  const float* x = nullptr;
  BITZERO_TRY(data_of(inputs[0], &x));
  BITZERO_TRY(output_rows(context, x_shape, p.n_out, &p.y));
  if (p.m == 0 || p.n_out == 0) return nullptr;

  // Per-token int8 quantization, as BitLinear's quantize_activations.
  std::vector<int8_t> q(static_cast<size_t>(p.m * p.kp), 0);
  std::vector<float> qf(p.n_critical ? static_cast<size_t>(p.m * p.kp) : 0, 0.0f);
  std::vector<int32_t> qsum(static_cast<size_t>(p.m));
  std::vector<float> scale(static_cast<size_t>(p.m));
  std::vector<float> gated;
  const GateFn swiglu = kernel->gated ? kernel->isa->swiglu : nullptr;
  for (int64_t m = 0; m < p.m; ++m)
    kernel->isa->quantize(token_input(swiglu, x, m, p.k, gated), p.k, &q[m * p.kp], p.n_critical ? &qf[m * p.kp] : nullptr,
                          &scale[m], &qsum[m]);
  p.q = q.data();
  p.qf = qf.data();
  p.qsum = qsum.data();
  p.scale = scale.data();
  const int64_t tasks = (p.n_ternary + kTileRows - 1) / kTileRows + (p.n_critical + kTileRows - 1) / kTileRows;
  return run_tasks(context, p, kernel->isa->run, tasks);
}

OrtStatus* chosen_isa(const Isa** isa) {
  *isa = choose_isa();
  if (*isa) return nullptr;
  const char* wanted = std::getenv("BITZERO_TERNARY_ISA");
  return fail(std::string("BITZERO_TERNARY_ISA=") + (wanted ? wanted : "") +
              " names an instruction set this CPU lacks (or none of scalar, avx2, avxvnni, avx512vnni)");
}

// The node's `gated` attribute (absent: 0).
bool gated_attribute(const OrtKernelInfo* info) {
  int64_t gated = 0;
  if (OrtStatus* status = g_api->KernelInfoGetAttribute_int64(info, "gated", &gated)) g_api->ReleaseStatus(status);
  return gated != 0;
}

OrtStatus* ORT_API_CALL create_kernel(const OrtCustomOp*, const OrtApi*, const OrtKernelInfo* info, void** kernel) {
  const Isa* isa = nullptr;
  BITZERO_TRY(chosen_isa(&isa));
  // The columns are an initializer in every exported graph: checked here once, not on every token
  // (a 3072-row permutation, about 3 us a call, 120 calls a token).
  const int32_t* columns = nullptr;
  int constant = 0;
  const OrtValue* value = nullptr;
  if (OrtStatus* status = g_api->KernelInfoGetConstantInput_tensor(info, 4, &constant, &value)) {
    g_api->ReleaseStatus(status);  // no fifth input
  } else if (constant && value) {
    std::vector<int64_t> shape;
    BITZERO_TRY(shape_of(value, shape));
    BITZERO_TRY(data_of(value, &columns));
    if (shape.size() != 1) return fail("columns must name one output column per row");
    BITZERO_TRY(check_columns(columns, shape[0]));
  }
  *kernel = new (std::nothrow) Kernel{isa, gated_attribute(info), columns};
  return *kernel ? nullptr : g_api->CreateStatus(ORT_FAIL, "TernaryMatMul: out of memory");
}

// TableMatMul's and Int4MatMul's kernels: the instruction set and (Int4MatMul) the gated attribute.
OrtStatus* ORT_API_CALL create_plain_kernel(const OrtCustomOp*, const OrtApi*, const OrtKernelInfo* info, void** kernel) {
  const Isa* isa = nullptr;
  BITZERO_TRY(chosen_isa(&isa));
  *kernel = new (std::nothrow) Kernel{isa, gated_attribute(info), nullptr};
  return *kernel ? nullptr : g_api->CreateStatus(ORT_FAIL, "bitzero kernels: out of memory");
}

OrtStatus* ORT_API_CALL table_compute(void* op_kernel, OrtKernelContext* context) {
  const Kernel* kernel = static_cast<const Kernel*>(op_kernel);
  const OrtValue* inputs[3];
  std::vector<int64_t> shapes[3];
  BITZERO_TRY(read_inputs(context, 3, inputs, shapes));
  const auto& [x_shape, codes_shape, scales_shape] = shapes;
  if (x_shape.empty()) return fail("X must have at least one dimension (..., K)", "TableMatMul");
  TableProblem p{};
  p.k = x_shape.back();
  if (codes_shape.size() != 2 || codes_shape[1] != p.k) return fail("codes must be (N, K) for K = " + std::to_string(p.k), "TableMatMul");
  p.n = codes_shape[0];
  if (scales_shape.size() != 1 || scales_shape[0] != p.n) return fail("scales must hold one scale per row", "TableMatMul");
  p.m = tokens(x_shape);
  BITZERO_TRY(data_of(inputs[0], &p.x));
  BITZERO_TRY(data_of(inputs[1], &p.codes));
  BITZERO_TRY(data_of(inputs[2], &p.scales));
  prefetch_start(p.codes, p.n * p.k);
  BITZERO_TRY(output_rows(context, x_shape, p.n, &p.y));
  if (p.m == 0 || p.n == 0) return nullptr;
  return run_tasks(context, p, kernel->isa->table, (p.n + kTableRows - 1) / kTableRows);
}

OrtStatus* ORT_API_CALL int4_compute(void* op_kernel, OrtKernelContext* context) {
  const Kernel* kernel = static_cast<const Kernel*>(op_kernel);
  const OrtValue* inputs[4];
  std::vector<int64_t> shapes[4];
  BITZERO_TRY(read_inputs(context, 4, inputs, shapes));
  const auto& [x_shape, codes_shape, scales_shape, mins_shape] = shapes;
  if (x_shape.empty()) return fail("X must have at least one dimension (..., K)", "Int4MatMul");
  Int4Problem p{};
  int64_t k = 0;
  BITZERO_TRY(input_width(kernel->gated, x_shape, "Int4MatMul", &k));
  p.blocks = (k + 2 * kInt4Block - 1) / (2 * kInt4Block) * 2;
  if (codes_shape.size() != 3 || codes_shape[1] != p.blocks || codes_shape[2] != 16)
    return fail("codes must be (N, 2 ceil(K / 64), 16) for K = " + std::to_string(k), "Int4MatMul");
  p.n = codes_shape[0];
  if (scales_shape != std::vector<int64_t>{(p.n + kTileRows - 1) / kTileRows, p.blocks, kTileRows} || mins_shape != scales_shape)
    return fail("scales and mins must be (ceil(N / 16), 2 ceil(K / 64), 16)", "Int4MatMul");
  p.m = tokens(x_shape);
  const float* x = nullptr;
  BITZERO_TRY(data_of(inputs[0], &x));
  BITZERO_TRY(data_of(inputs[1], &p.codes));
  BITZERO_TRY(data_of(inputs[2], &p.scales));
  BITZERO_TRY(data_of(inputs[3], &p.mins));
  prefetch_start(p.codes, p.n * p.blocks * 16);
  BITZERO_TRY(output_rows(context, x_shape, p.n, &p.y));
  if (p.m == 0 || p.n == 0) return nullptr;
  const BlockActivations a(kernel->isa->quantize_blocks, kernel->gated ? kernel->isa->swiglu : nullptr, x, p.m, k, p.blocks);
  p.q = a.q.data();
  p.qscale = a.qscale.data();
  p.xsum = a.xsum.data();
  p.residual = a.residual.data();
  return run_tasks(context, p, kernel->isa->int4, (p.n + kTileRows - 1) / kTileRows);
}

OrtStatus* ORT_API_CALL int8_compute(void* op_kernel, OrtKernelContext* context) {
  const Kernel* kernel = static_cast<const Kernel*>(op_kernel);
  const OrtValue* inputs[3];
  std::vector<int64_t> shapes[3];
  BITZERO_TRY(read_inputs(context, 3, inputs, shapes));
  const auto& [x_shape, codes_shape, scales_shape] = shapes;
  if (x_shape.empty()) return fail("X must have at least one dimension (..., K)", "Int8MatMul");
  Int8Problem p{};
  const int64_t k = x_shape.back();
  p.blocks = (k + kInt4Block - 1) / kInt4Block;
  if (codes_shape.size() != 3 || codes_shape[1] != p.blocks || codes_shape[2] != kInt4Block)
    return fail("codes must be (N, ceil(K / 32), 32) for K = " + std::to_string(k), "Int8MatMul");
  p.n = codes_shape[0];
  if (scales_shape != std::vector<int64_t>{p.n, p.blocks}) return fail("scales must be (N, ceil(K / 32))", "Int8MatMul");
  p.m = tokens(x_shape);
  const float* x = nullptr;
  BITZERO_TRY(data_of(inputs[0], &x));
  BITZERO_TRY(data_of(inputs[1], &p.codes));
  BITZERO_TRY(data_of(inputs[2], &p.scales));
  prefetch_start(p.codes, p.n * p.blocks * kInt4Block);
  BITZERO_TRY(output_rows(context, x_shape, p.n, &p.y));
  if (p.m == 0 || p.n == 0) return nullptr;
  // The activations in order (the portable quantizer's layout; a token's share of the work is small).
  const BlockActivations a(scalar::quantize_blocks, nullptr, x, p.m, k, p.blocks);
  p.q = a.q.data();
  p.qscale = a.qscale.data();
  return run_tasks(context, p, kernel->isa->int8, (p.n + kTileRows - 1) / kTileRows);
}

void ORT_API_CALL destroy_kernel(void* kernel) { delete static_cast<Kernel*>(kernel); }
const char* ORT_API_CALL op_name(const OrtCustomOp*) { return "TernaryMatMul"; }
const char* ORT_API_CALL table_op_name(const OrtCustomOp*) { return "TableMatMul"; }
const char* ORT_API_CALL int4_op_name(const OrtCustomOp*) { return "Int4MatMul"; }
const char* ORT_API_CALL int8_op_name(const OrtCustomOp*) { return "Int8MatMul"; }
const char* ORT_API_CALL op_provider(const OrtCustomOp*) { return "CPUExecutionProvider"; }
size_t ORT_API_CALL input_count(const OrtCustomOp*) { return 5; }
size_t ORT_API_CALL table_input_count(const OrtCustomOp*) { return 3; }
size_t ORT_API_CALL int4_input_count(const OrtCustomOp*) { return 4; }
size_t ORT_API_CALL output_count(const OrtCustomOp*) { return 1; }
ONNXTensorElementDataType ORT_API_CALL input_type(const OrtCustomOp*, size_t index) {
  static const ONNXTensorElementDataType types[] = {
      ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
      ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32};
  return index < 5 ? types[index] : ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}
ONNXTensorElementDataType ORT_API_CALL output_type(const OrtCustomOp*, size_t) { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
ONNXTensorElementDataType ORT_API_CALL table_input_type(const OrtCustomOp*, size_t index) {
  static const ONNXTensorElementDataType types[] = {
      ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT};
  return index < 3 ? types[index] : ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}
ONNXTensorElementDataType ORT_API_CALL int8_input_type(const OrtCustomOp*, size_t index) {
  static const ONNXTensorElementDataType types[] = {
      ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT};
  return index < 3 ? types[index] : ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}
ONNXTensorElementDataType ORT_API_CALL int4_input_type(const OrtCustomOp*, size_t index) {
  static const ONNXTensorElementDataType types[] = {
      ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16,
      ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16};
  return index < 4 ? types[index] : ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}
OrtCustomOpInputOutputCharacteristic ORT_API_CALL required(const OrtCustomOp*, size_t) { return INPUT_OUTPUT_REQUIRED; }
OrtCustomOpInputOutputCharacteristic ORT_API_CALL input_characteristic(const OrtCustomOp*, size_t index) {
  return index >= 3 ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
}
OrtMemType ORT_API_CALL input_memory(const OrtCustomOp*, size_t) { return OrtMemTypeDefault; }
int ORT_API_CALL variadic_arity(const OrtCustomOp*) { return 1; }
int ORT_API_CALL variadic_homogeneity(const OrtCustomOp*) { return 0; }
int ORT_API_CALL start_version(const OrtCustomOp*) { return 1; }
int ORT_API_CALL end_version(const OrtCustomOp*) { return 2147483647; }
size_t ORT_API_CALL no_pairs(int** inputs, int** outputs) {
  *inputs = nullptr;
  *outputs = nullptr;
  return 0;
}
void ORT_API_CALL release_pairs(int*, int*) {}

// What differs between the ops; the rest of their OrtCustomOp is the same.
struct OpSpec {
  const char* (ORT_API_CALL* name)(const OrtCustomOp*);
  size_t (ORT_API_CALL* input_count)(const OrtCustomOp*);
  ONNXTensorElementDataType (ORT_API_CALL* input_type)(const OrtCustomOp*, size_t);
  OrtCustomOpInputOutputCharacteristic (ORT_API_CALL* input_characteristic)(const OrtCustomOp*, size_t);
  OrtStatus* (ORT_API_CALL* create)(const OrtCustomOp*, const OrtApi*, const OrtKernelInfo*, void**);
  OrtStatus* (ORT_API_CALL* compute)(void*, OrtKernelContext*);
};

OrtCustomOp make_op(const OpSpec& spec) {
  OrtCustomOp op;
  std::memset(&op, 0, sizeof(op));
  op.version = ORT_API_VERSION;
  op.GetName = spec.name;
  op.GetExecutionProviderType = op_provider;
  op.GetInputType = spec.input_type;
  op.GetInputTypeCount = spec.input_count;
  op.GetOutputType = output_type;
  op.GetOutputTypeCount = output_count;
  op.KernelDestroy = destroy_kernel;
  op.GetInputCharacteristic = spec.input_characteristic;
  op.GetOutputCharacteristic = required;
  op.GetInputMemoryType = input_memory;
  op.GetVariadicInputMinArity = variadic_arity;
  op.GetVariadicInputHomogeneity = variadic_homogeneity;
  op.GetVariadicOutputMinArity = variadic_arity;
  op.GetVariadicOutputHomogeneity = variadic_homogeneity;
  op.CreateKernelV2 = spec.create;
  op.KernelComputeV2 = spec.compute;
  op.GetStartVersion = start_version;
  op.GetEndVersion = end_version;
  op.GetMayInplace = no_pairs;
  op.ReleaseMayInplace = release_pairs;
  op.GetAliasMap = no_pairs;
  op.ReleaseAliasMap = release_pairs;
  return op;
}

const OrtCustomOp g_op = make_op({op_name, input_count, input_type, input_characteristic, create_kernel, compute});
const OrtCustomOp g_table_op =
    make_op({table_op_name, table_input_count, table_input_type, required, create_plain_kernel, table_compute});
const OrtCustomOp g_int4_op =
    make_op({int4_op_name, int4_input_count, int4_input_type, required, create_plain_kernel, int4_compute});
const OrtCustomOp g_int8_op =
    make_op({int8_op_name, table_input_count, int8_input_type, required, create_plain_kernel, int8_compute});

}  // namespace

extern "C" {

// onnxruntime's entry point for a custom-op library (SessionOptions.register_custom_ops_library).
__attribute__((visibility("default"))) OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options,
                                                                                  const OrtApiBase* api_base) {
  g_api = api_base->GetApi(ORT_API_VERSION);
  if (!g_api) return nullptr;  // an onnxruntime older than these headers: nothing registered, its loader reports the op
  OrtCustomOpDomain* domain = nullptr;
  BITZERO_TRY(g_api->CreateCustomOpDomain("com.bitzero", &domain));
  BITZERO_TRY(g_api->CustomOpDomain_Add(domain, &g_op));
  BITZERO_TRY(g_api->CustomOpDomain_Add(domain, &g_table_op));
  BITZERO_TRY(g_api->CustomOpDomain_Add(domain, &g_int4_op));
  BITZERO_TRY(g_api->CustomOpDomain_Add(domain, &g_int8_op));
  return g_api->AddCustomOpDomain(options, domain);
}

// The instruction set a kernel created now would use ("" when BITZERO_TERNARY_ISA names one the CPU lacks).
__attribute__((visibility("default"))) const char* BitZeroTernaryIsa() {
  const Isa* isa = choose_isa();
  return isa ? isa->name : "";
}
}
