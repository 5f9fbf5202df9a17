/*
 * Tessera SGEMM core: BLIS-style packed, register-blocked single-precision GEMM
 * whose operand packing and output epilogue are callbacks (see GEMM.md).
 *
 *   C[M x N] = epilogue( A[M x K] * B[K x N] )
 *
 * Header-only. Everything except the entry point is `static`. Define
 * TESSERA_GEMM_IMPLEMENTATION in exactly one translation unit before including this
 * header to emit the (exported) definition of tessera_gemm_run; other units get the
 * declaration only. Portable C (GCC/Clang vector extensions); the ISA is picked at
 * compile time: AVX-512F (fast path), AVX2+FMA, NEON, or scalar.
 */
#ifndef TESSERA_GEMM_H
#define TESSERA_GEMM_H

#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- ISA selection */
/* TESSERA_VL: floats per vector register; TESSERA_MR x TESSERA_NR: register tile
   (MR rows broadcast from packed A, NR = TESSERA_NV vectors of packed B).
   Defaults: MC rows of A per L2 block, KC depth per block, NC columns of B per L3 block. */
#if defined(__AVX512F__)
#include <immintrin.h>
#define TESSERA_GEMM_ISA "avx512"
#define TESSERA_VL 16
#define TESSERA_MR 14
#define TESSERA_NV 2
#define TESSERA_MC_DEFAULT 112
#define TESSERA_KC_DEFAULT 512
#define TESSERA_NC_DEFAULT 1024
#elif defined(__AVX2__) && defined(__FMA__)
#define TESSERA_GEMM_ISA "avx2"
#define TESSERA_VL 8
#define TESSERA_MR 6
#define TESSERA_NV 2
#define TESSERA_MC_DEFAULT 96
#define TESSERA_KC_DEFAULT 256
#define TESSERA_NC_DEFAULT 1024
#elif defined(__ARM_NEON) || defined(__ARM_NEON__)
#define TESSERA_GEMM_ISA "neon"
#define TESSERA_VL 4
#define TESSERA_MR 8
#define TESSERA_NV 3
#define TESSERA_MC_DEFAULT 96
#define TESSERA_KC_DEFAULT 256
#define TESSERA_NC_DEFAULT 1032
#else
#define TESSERA_GEMM_ISA "scalar"
#define TESSERA_VL 1
#define TESSERA_MR 4
#define TESSERA_NV 4
#define TESSERA_MC_DEFAULT 64
#define TESSERA_KC_DEFAULT 256
#define TESSERA_NC_DEFAULT 512
#endif
#define TESSERA_NR (TESSERA_VL * TESSERA_NV)
/* A bf16 dot product into f32 (vdpbf16ps: two products of bf16 pairs added to each f32 lane, exact
   products, f32 sums; bf16 denormals read as zero). Twice the FMA's flops per instruction. */
#if defined(__AVX512F__) && defined(__AVX512BF16__)
#define TESSERA_GEMM_BF16 1
#endif
/* Default cap on the per-thread packed B panel (K x nc floats): nc shrinks for very deep K. */
#ifndef TESSERA_B_BUDGET
#define TESSERA_B_BUDGET (4 << 20)
#endif

#if TESSERA_VL > 1
typedef float tessera_vf __attribute__((vector_size(TESSERA_VL * 4)));
/* Unaligned, aliasing-safe view for loads/stores of user memory. */
typedef float tessera_vfu __attribute__((vector_size(TESSERA_VL * 4), aligned(4), may_alias));
#else
typedef float tessera_vf;
typedef float tessera_vfu;
#endif

#define TESSERA_ALIGN 64

/* ---------------------------------------------------------------- interface */
typedef struct tessera_gemm {
  int M, N, K;
  /* Pack rows [m0, m0+mc) x cols [k0, k0+kc) of the logical A (M x K) into dst as MR-row panels:
     dst[(p*kc + k)*TESSERA_MR + r] = A[m0 + p*TESSERA_MR + r][k0 + k], zero for rows >= M. */
  void (*pack_a)(const void *ctx, int m0, int mc, int k0, int kc, float *dst);
  /* Pack rows [k0, k0+kc) x cols [n0, n0+nc) of the logical B (K x N) into dst as NR-column panels:
     dst[(p*kc + k)*TESSERA_NR + c] = B[k0 + k][n0 + p*TESSERA_NR + c], zero for cols >= N. */
  void (*pack_b)(const void *ctx, int k0, int kc, int n0, int nc, float *dst);
  /* A finished tile: acc[r*ldacc + c] = sum_k A[m0+r][k] * B[k][n0+c] for r < mr, c < nr (mr <= MR, nr <= NR
     clipped at the matrix edge). Called exactly once per output element, after the full K reduction. */
  void (*epilogue)(const void *ctx, int m0, int mr, int n0, int nr, const float *acc, int ldacc);
  const void *ctx;
  /* Blocking (0 = default chosen by the header for this ISA): */
  int mc, kc, nc;
  /* Optional bf16 packers, for products whose operands are both bf16 values (mixed precision). Where the
     CPU has a bf16 dot product (TESSERA_GEMM_BF16: AVX-512 BF16's vdpbf16ps) the driver uses these instead
     of pack_a/pack_b and accumulates in f32 two k at a time; elsewhere it ignores them. Panels hold
     k-pairs: with kp = (kc + 1) / 2 pairs,
       A: dst[((p*kp + k/2)*TESSERA_MR + r)*2 + k%2] = bf16 bits of A[m0 + p*MR + r][k0 + k]
       B: dst[((p*kp + k/2)*TESSERA_NR + c)*2 + k%2] = bf16 bits of B[k0 + k][n0 + p*NR + c]
     and zero for rows >= M, cols >= N, and the second half of the last pair when kc is odd (the zero
     must be real: garbage times zero can be NaN). */
  void (*pack_a_bf16)(const void *ctx, int m0, int mc, int k0, int kc, uint16_t *dst);
  void (*pack_b_bf16)(const void *ctx, int k0, int kc, int n0, int nc, uint16_t *dst);
} tessera_gemm;
/* Computes this thread's share (thread_index of thread_count; the caller runs every index on its own
   thread concurrently and waits for all). Work split must need no barrier between threads: e.g. split N
   (or M when N is small) into disjoint ranges, each thread packing its own panels. Scratch memory: use
   aligned thread-local buffers allocated once and reused (grown when needed), never freed per call. */
void tessera_gemm_run(const tessera_gemm *g, int thread_index, int thread_count);

/* Driver guarantees to the callbacks (beyond the comments above):
   - m0 is a multiple of TESSERA_MR and n0 of TESSERA_NR; mc (nc) is a multiple of MR (NR) unless
     m0+mc == M (n0+nc == N), so padding rows/cols of a partial panel are exactly those >= M (>= N).
     The padding only ever reaches padding outputs, so a pack routine that leaves it unwritten is
     still correct (just uses uninitialised values in discarded lanes); zero it anyway.
   - dst is 64-byte aligned. B panels and their NR-float rows are vector aligned (NR*4 is a multiple of
     the vector size), so pack_b may use aligned vector stores; A panels are only float aligned.
   - acc is 64-byte aligned with ldacc == TESSERA_NR (rows of acc are vector aligned); it is only valid
     during the call. Within a block of mc rows, tiles are usually visited down a column (m0 += MR with
     n0 fixed), then the next column: an epilogue may prefetch the next tile's output on that basis.
   - With K == 0 the epilogue is still called once per element, with acc all zero.
   - Callbacks run on the thread that called tessera_gemm_run; with several threads they run
     concurrently and must only write their own dst / their own output tile. */

/* ---------------------------------------------------------------- plain row-major callbacks */
typedef struct tessera_gemm_rowmajor {
  const float *A, *B; /* A: M x K (row stride lda), B: K x N (row stride ldb) */
  float *C;           /* C: M x N (row stride ldc), overwritten */
  int lda, ldb, ldc;
} tessera_gemm_rowmajor;

/* Pack a block of row-major A (transpose into MR-interleaved panels). */
static inline void tessera_pack_a_rowmajor_ex(const float *A, int lda, int m0, int mc, int k0, int kc,
                                              float *dst) {
  const int MR = TESSERA_MR;
  for (int i = 0; i < mc; i += MR, dst += (size_t)kc * MR) {
    int rows = mc - i < MR ? mc - i : MR;
    const float *src = A + (size_t)(m0 + i) * lda + k0;
#if defined(__AVX512F__)
    if (rows == MR) {
      /* 16 k at a time: load 16 rows (14 real + 2 zero) x 16 floats, transpose with the classic
         unpack/shuffle network, store 16 columns of 14 floats with masked stores. */
      int k = 0;
      for (; k + 16 <= kc; k += 16) {
        __m512 r[16], t[16];
        for (int q = 0; q < MR; ++q) r[q] = _mm512_loadu_ps(src + (size_t)q * lda + k);
        r[14] = r[15] = _mm512_setzero_ps();
        for (int q = 0; q < 16; q += 2) {
          t[q] = _mm512_unpacklo_ps(r[q], r[q + 1]);
          t[q + 1] = _mm512_unpackhi_ps(r[q], r[q + 1]);
        }
        for (int q = 0; q < 16; q += 4) {
          __m512d a0 = _mm512_castps_pd(t[q]), a1 = _mm512_castps_pd(t[q + 1]);
          __m512d a2 = _mm512_castps_pd(t[q + 2]), a3 = _mm512_castps_pd(t[q + 3]);
          r[q] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
          r[q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
          r[q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
          r[q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
        }
        /* r[4g + j] now holds, per 128-bit lane l, rows 4g..4g+3 of column 4l + j. */
        for (int j = 0; j < 4; ++j) {
          __m512 x0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);      /* lanes 0,2 | 0,2 */
          __m512 x1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);      /* lanes 1,3 | 1,3 */
          __m512 x2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
          __m512 x3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
          t[j] = _mm512_shuffle_f32x4(x0, x2, 0x88);      /* column j      (lane 0) */
          t[8 + j] = _mm512_shuffle_f32x4(x0, x2, 0xdd);  /* column 8 + j  (lane 2) */
          t[4 + j] = _mm512_shuffle_f32x4(x1, x3, 0x88);  /* column 4 + j  (lane 1) */
          t[12 + j] = _mm512_shuffle_f32x4(x1, x3, 0xdd); /* column 12 + j (lane 3) */
        }
        float *d = dst + (size_t)k * MR;
        for (int q = 0; q < 16; ++q) _mm512_mask_storeu_ps(d + q * MR, (__mmask16)0x3fff, t[q]);
      }
      for (; k < kc; ++k)
        for (int r = 0; r < MR; ++r) dst[(size_t)k * MR + r] = src[(size_t)r * lda + k];
      continue;
    }
#endif
    for (int k = 0; k < kc; ++k) {
      float *d = dst + (size_t)k * MR;
      int r = 0;
      for (; r < rows; ++r) d[r] = src[(size_t)r * lda + k];
      for (; r < MR; ++r) d[r] = 0.0f;
    }
  }
}

/* Pack a block of row-major B: each panel row is a contiguous NR-float copy. Rows are visited in groups
   of 8 across all panels, so the reads stream along rows of B (instead of striding down a column of
   panels, one page per row) while the writes stay within a few 1 KiB runs. */
static inline void tessera_pack_b_rowmajor_ex(const float *B, int ldb, int k0, int kc, int n0, int nc,
                                              float *dst) {
  const int NR = TESSERA_NR;
  const int full = nc / NR; /* panels without padding */
  for (int kb = 0; kb < kc; kb += 8) {
    const int ke = kb + 8 < kc ? kb + 8 : kc;
    for (int p = 0; p < full; ++p) {
      const float *src = B + (size_t)(k0 + kb) * ldb + n0 + p * NR;
      float *d = dst + ((size_t)p * kc + kb) * NR;
      for (int k = kb; k < ke; ++k, src += ldb, d += NR)
        for (int v = 0; v < TESSERA_NV; ++v)
          ((tessera_vf *)d)[v] = *(const tessera_vfu *)(src + v * TESSERA_VL);
    }
  }
  if (full * NR < nc) { /* last, partial panel: zero the padding columns */
    const int cols = nc - full * NR;
    const float *src = B + (size_t)k0 * ldb + n0 + full * NR;
    float *d = dst + (size_t)full * kc * NR;
    for (int k = 0; k < kc; ++k, src += ldb, d += NR) {
      int c = 0;
      for (; c < cols; ++c) d[c] = src[c];
      for (; c < NR; ++c) d[c] = 0.0f;
    }
  }
}

/* 16-bit floating-point operands (mixed precision): widened to f32 while packing, so the micro-kernel is
   the f32 one. bf16 is the top half of an f32 (a shift); f16 goes through the compiler's _Float16. */
static inline float tessera_u16_to_f32(uint16_t v, int is_bf16) {
  if (is_bf16) {
    union { uint32_t u; float f; } x = { (uint32_t)v << 16 };
    return x.f;
  }
  union { uint16_t u; _Float16 h; } y = { v };
  return (float)y.h;
}

/* Row-major A (m x k, stride lda) of 16-bit floats: rows contiguous along k. */
static inline void tessera_pack_a_rowmajor_u16(const uint16_t *A, int lda, int m0, int mc, int k0, int kc,
                                               float *dst, int is_bf16) {
  const int MR = TESSERA_MR;
  for (int i = 0; i < mc; i += MR, dst += (size_t)kc * MR) {
    const int rows = mc - i < MR ? mc - i : MR;
    const uint16_t *src = A + (size_t)(m0 + i) * lda + k0;
    int r = 0;
    for (; r < rows; ++r) {
      const uint16_t *row = src + (size_t)r * lda;
      for (int k = 0; k < kc; ++k) dst[(size_t)k * MR + r] = tessera_u16_to_f32(row[k], is_bf16);
    }
    for (; r < MR; ++r)
      for (int k = 0; k < kc; ++k) dst[(size_t)k * MR + r] = 0.0f;
  }
}

/* Row-major B (k x n, stride ldb) of 16-bit floats: each panel row is NR contiguous values. */
static inline void tessera_pack_b_rowmajor_u16(const uint16_t *B, int ldb, int k0, int kc, int n0, int nc,
                                               float *dst, int is_bf16) {
  const int NR = TESSERA_NR;
  for (int p = 0; p * NR < nc; ++p) {
    const int cols = nc - p * NR < NR ? nc - p * NR : NR;
    float *d = dst + (size_t)p * kc * NR;
    const uint16_t *src = B + (size_t)k0 * ldb + n0 + p * NR;
    for (int k = 0; k < kc; ++k, src += ldb, d += NR) {
      int c = 0;
      for (; c < cols; ++c) d[c] = tessera_u16_to_f32(src[c], is_bf16);
      for (; c < NR; ++c) d[c] = 0.0f;
    }
  }
}

/* bf16 pair panels (layout in tessera_gemm's pack_a_bf16/pack_b_bf16). Row-major A of bf16: along k a
   row's pairs are adjacent, so each (row, pair) is one 32-bit copy. */
static inline void tessera_pack_a_rowmajor_bf16(const uint16_t *A, int lda, int m0, int mc, int k0, int kc,
                                                uint16_t *dst) {
  const int MR = TESSERA_MR, kp = (kc + 1) / 2, full = kc / 2;
  uint32_t *d32 = (uint32_t *)dst;
  for (int i = 0; i < mc; i += MR, d32 += (size_t)kp * MR) {
    const int rows = mc - i < MR ? mc - i : MR;
    int r = 0;
    for (; r < rows; ++r) {
      const uint16_t *row = A + (size_t)(m0 + i + r) * lda + k0;
      uint32_t *d = d32 + r;
      for (int q = 0; q < full; ++q) {
        uint32_t v;
        memcpy(&v, row + 2 * q, 4);
        d[(size_t)q * MR] = v;
      }
      if (kp > full) d[(size_t)full * MR] = row[kc - 1];
    }
    for (; r < MR; ++r)
      for (int q = 0; q < kp; ++q) d32[(size_t)q * MR + r] = 0;
  }
}

/* Row-major B of bf16: a panel row pair interleaves two rows of B (k, k+1) column by column. */
static inline void tessera_pack_b_rowmajor_bf16(const uint16_t *B, int ldb, int k0, int kc, int n0, int nc,
                                                uint16_t *dst) {
  const int NR = TESSERA_NR, kp = (kc + 1) / 2;
  for (int p = 0; p * NR < nc; ++p) {
    const int cols = nc - p * NR < NR ? nc - p * NR : NR;
    uint16_t *d = dst + (size_t)p * kp * NR * 2;
    const uint16_t *src = B + (size_t)k0 * ldb + n0 + p * NR;
    for (int q = 0; q < kp; ++q, d += NR * 2) {
      const uint16_t *r0 = src + (size_t)(2 * q) * ldb;
      const uint16_t *r1 = 2 * q + 1 < kc ? r0 + ldb : NULL;
      int c = 0;
#if defined(__AVX512BW__)
      if (cols == NR && r1) {
        /* 32 columns of two rows: interleave with one two-source permute per 32 output words. */
        const __m512i lo_idx = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                                39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
        const __m512i hi_idx = _mm512_set_epi16(63, 31, 62, 30, 61, 29, 60, 28, 59, 27, 58, 26, 57, 25, 56, 24,
                                                55, 23, 54, 22, 53, 21, 52, 20, 51, 19, 50, 18, 49, 17, 48, 16);
        const __m512i x = _mm512_loadu_si512(r0), y = _mm512_loadu_si512(r1);
        _mm512_storeu_si512(d, _mm512_permutex2var_epi16(x, lo_idx, y));
        _mm512_storeu_si512(d + 32, _mm512_permutex2var_epi16(x, hi_idx, y));
        continue;
      }
#endif
      for (; c < cols; ++c) {
        d[2 * c] = r0[c];
        d[2 * c + 1] = r1 ? r1[c] : 0;
      }
      for (; c < NR; ++c) d[2 * c] = d[2 * c + 1] = 0;
    }
  }
}

/* Column-major A (element (m, k) at m + k*lda, i.e. a transposed row-major matrix): each packed
   k-slice is MR consecutive floats of one source column, a straight copy. */
static inline void tessera_pack_a_colmajor(const float *A, int lda, int m0, int mc, int k0, int kc, float *dst) {
  const int MR = TESSERA_MR;
  for (int i = 0; i < mc; i += MR, dst += (size_t)kc * MR) {
    const int rows = mc - i < MR ? mc - i : MR;
    for (int k = 0; k < kc; ++k) {
      const float *src = A + (size_t)(k0 + k) * lda + m0 + i;
      float *d = dst + (size_t)k * MR;
      int r = 0;
      for (; r < rows; ++r) d[r] = src[r];
      for (; r < MR; ++r) d[r] = 0.0f;
    }
  }
}

/* Column-major B (element (k, n) at k + n*ldb: a weight W[n, k] read as Wᵀ): each of a panel's NR
   columns is a contiguous run along k, scattered into the panel with stride NR. Reads stream; the
   panel (kc x NR floats) stays in L1/L2 while it is written. */
static inline void tessera_pack_b_colmajor(const float *B, int ldb, int k0, int kc, int n0, int nc, float *dst) {
  const int NR = TESSERA_NR;
  for (int p = 0; p * NR < nc; ++p) {
    const int cols = nc - p * NR < NR ? nc - p * NR : NR;
    float *d = dst + (size_t)p * kc * NR;
    int c = 0;
    for (; c < cols; ++c) {
      const float *src = B + (size_t)(n0 + p * NR + c) * ldb + k0;
      for (int k = 0; k < kc; ++k) d[(size_t)k * NR + c] = src[k];
    }
    for (; c < NR; ++c)
      for (int k = 0; k < kc; ++k) d[(size_t)k * NR + c] = 0.0f;
  }
}

/* ---------------------------------------------------------------- skinny products */
/* Few rows (batched decoding: M = a few dozen tokens) against a weight stored row by row (W[n, k], read
   as Wᵀ): packing would re-read and re-write the whole weight and the register tile would be mostly
   padding. Instead each weight row is read once from memory, and from L1 by the dot products of all M
   rows. */
#define TESSERA_SKINNY_MAX_M 64
#define TESSERA_SKINNY_NB 64

static inline float tessera_dot(const float *a, const float *b, int K) {
  int k = 0;
  float r = 0.0f;
#if TESSERA_VL > 1
  tessera_vf s0 = {0}, s1 = {0};
  for (; k + 2 * TESSERA_VL <= K; k += 2 * TESSERA_VL) {
    s0 += *(const tessera_vfu *)(a + k) * *(const tessera_vfu *)(b + k);
    s1 += *(const tessera_vfu *)(a + k + TESSERA_VL) * *(const tessera_vfu *)(b + k + TESSERA_VL);
  }
  s0 += s1;
  for (int v = 0; v < TESSERA_VL; ++v) r += s0[v];
#endif
  for (; k < K; ++k) r += a[k] * b[k];
  return r;
}

typedef void (*tessera_epilogue_fn)(const void *ctx, int m0, int mr, int n0, int nr, const float *acc, int ldacc);

#if defined(__AVX512F__)
/* The four horizontal sums of a, b, c, d, as one vector: 512 -> 256 bits, then a tree of pairwise adds
   that transposes as it goes (4 vectors in 5 shuffling adds instead of 4 full reductions). */
static inline __m128 tessera_hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
#define TESSERA_HALVES(x) \
  _mm256_add_ps(_mm512_castps512_ps256(x), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)))
  const __m256 ab = _mm256_hadd_ps(TESSERA_HALVES(a), TESSERA_HALVES(b));
  const __m256 cd = _mm256_hadd_ps(TESSERA_HALVES(c), TESSERA_HALVES(d));
#undef TESSERA_HALVES
  const __m256 h = _mm256_hadd_ps(ab, cd); /* [a b c d] partial sums in each 128-bit half */
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* Keeps a loaded vector in a register: without it GCC folds the load into every FMA that reads it (four
   loads per vector instead of one: 20 loads per 16 FMAs, load-port bound at ~67% of the FMA peak). */
#define TESSERA_IN_REGISTER(v) __asm__("" : "+v"(v))

/* Prefetch of weight rows ahead of the skinny kernels: `rows` rows from `row0` of `base` (row stride `ld`),
   one line of each per 16-float step, into L2; and the same rows of the group before it (the next one to
   be multiplied, already in L2 by then) into L1, so its first pass does not wait on L2 either. NULL base:
   nothing. */
typedef struct {
  const float *base;
  int row0, rows;
} tessera_skinny_prefetch;

static inline void tessera_skinny_prefetch_step(tessera_skinny_prefetch pf, int ldw, int k) {
  if (pf.base)
    for (int r = 0; r < pf.rows; ++r) {
      _mm_prefetch((const char *)(pf.base + (size_t)(pf.row0 + r) * ldw + k), _MM_HINT_T1);
      _mm_prefetch((const char *)(pf.base + (size_t)(pf.row0 + r - 4) * ldw + k), _MM_HINT_T0);
    }
}

/* out[r*ldo + c] = Σ_k A[r][k] · W[c][k] for r, c < 4: sixteen accumulators, so each vector loaded from
   A or W feeds four FMAs (8 loads per 16 FMAs) and the FMA latency is covered. */
static inline void tessera_skinny_4x4(const float *a, int lda, const float *const w[4], int ldw, int K, float *out, int ldo,
                                      tessera_skinny_prefetch pf) {
  __m512 s[4][4];
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) s[r][c] = _mm512_setzero_ps();
  int k = 0;
  for (; k + 16 <= K; k += 16) {
    tessera_skinny_prefetch_step(pf, ldw, k);
    __m512 w0 = _mm512_loadu_ps(w[0] + k), w1 = _mm512_loadu_ps(w[1] + k);
    __m512 w2 = _mm512_loadu_ps(w[2] + k), w3 = _mm512_loadu_ps(w[3] + k);
    TESSERA_IN_REGISTER(w0);
    TESSERA_IN_REGISTER(w1);
    TESSERA_IN_REGISTER(w2);
    TESSERA_IN_REGISTER(w3);
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {
      __m512 x = _mm512_loadu_ps(a + (size_t)r * lda + k);
      TESSERA_IN_REGISTER(x);
      s[r][0] = _mm512_fmadd_ps(x, w0, s[r][0]);
      s[r][1] = _mm512_fmadd_ps(x, w1, s[r][1]);
      s[r][2] = _mm512_fmadd_ps(x, w2, s[r][2]);
      s[r][3] = _mm512_fmadd_ps(x, w3, s[r][3]);
    }
  }
  if (k < K) { /* masked tail: lanes past K read nothing and add zero */
    const __mmask16 m = (__mmask16)((1u << (K - k)) - 1u);
    const __m512 w0 = _mm512_maskz_loadu_ps(m, w[0] + k), w1 = _mm512_maskz_loadu_ps(m, w[1] + k);
    const __m512 w2 = _mm512_maskz_loadu_ps(m, w[2] + k), w3 = _mm512_maskz_loadu_ps(m, w[3] + k);
    for (int r = 0; r < 4; ++r) {
      const __m512 x = _mm512_maskz_loadu_ps(m, a + (size_t)r * lda + k);
      s[r][0] = _mm512_fmadd_ps(x, w0, s[r][0]);
      s[r][1] = _mm512_fmadd_ps(x, w1, s[r][1]);
      s[r][2] = _mm512_fmadd_ps(x, w2, s[r][2]);
      s[r][3] = _mm512_fmadd_ps(x, w3, s[r][3]);
    }
  }
  for (int r = 0; r < 4; ++r) _mm_storeu_ps(out + (size_t)r * ldo, tessera_hsum4(s[r][0], s[r][1], s[r][2], s[r][3]));
}

/* One row of A against four weight rows (the M % 4 leftover rows). */
static inline void tessera_skinny_1x4(const float *a, const float *const w[4], int ldw, int K, float *out, tessera_skinny_prefetch pf) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int k = 0;
  for (; k + 16 <= K; k += 16) {
    tessera_skinny_prefetch_step(pf, ldw, k);
    __m512 x = _mm512_loadu_ps(a + k);
    TESSERA_IN_REGISTER(x);
    s0 = _mm512_fmadd_ps(x, _mm512_loadu_ps(w[0] + k), s0);
    s1 = _mm512_fmadd_ps(x, _mm512_loadu_ps(w[1] + k), s1);
    s2 = _mm512_fmadd_ps(x, _mm512_loadu_ps(w[2] + k), s2);
    s3 = _mm512_fmadd_ps(x, _mm512_loadu_ps(w[3] + k), s3);
  }
  if (k < K) {
    const __mmask16 m = (__mmask16)((1u << (K - k)) - 1u);
    const __m512 x = _mm512_maskz_loadu_ps(m, a + k);
    s0 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, w[0] + k), s0);
    s1 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, w[1] + k), s1);
    s2 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, w[2] + k), s2);
    s3 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, w[3] + k), s3);
  }
  _mm_storeu_ps(out, tessera_hsum4(s0, s1, s2, s3));
}
#endif

/* Rows of a gathered operand (a paged KV cache read through its slot table): row n of B is
   B + idx[n * istride] * ldb, and a row whose index is outside [0, rows) reads as zeros (as the gather it
   stands for), which needs K <= TESSERA_GATHER_MAX_K. idx NULL: row n is B + n * ldb. */
#define TESSERA_GATHER_MAX_K 4096
static const float tessera_zero_row[TESSERA_GATHER_MAX_K] __attribute__((aligned(64), unused));

typedef struct {
  const int32_t *idx;
  int64_t istride, rows;
} tessera_row_index;

static inline const float *tessera_row_at(const float *B, int64_t ldb, const tessera_row_index *ri, int64_t n) {
  if (!ri) return B + n * ldb;
  const int64_t i = ri->idx[n * ri->istride];
  return i >= 0 && i < ri->rows ? B + i * ldb : tessera_zero_row;
}

/* C[m, n] = Σ_k A[m*lda + k] · B[n*ldb + k] for m < M (M <= TESSERA_SKINNY_MAX_M), n in [n0, n1), handed
   to `epi` in blocks of TESSERA_SKINNY_NB columns. With `ri`, the rows of B are gathered through it
   (tessera_row_at). */
static inline void tessera_skinny_range_ex(const float *A, int lda, const float *B, int64_t ldb, const tessera_row_index *ri,
                                           int M, int K, int64_t n0, int64_t n1, tessera_epilogue_fn epi, const void *ctx) {
  float acc[TESSERA_SKINNY_MAX_M * TESSERA_SKINNY_NB] __attribute__((aligned(64)));
  for (int64_t nb = n0; nb < n1; nb += TESSERA_SKINNY_NB) {
    const int nr = (int)(n1 - nb < TESSERA_SKINNY_NB ? n1 - nb : TESSERA_SKINNY_NB);
    int q = 0;
#if defined(__AVX512F__)
    /* Four weight rows at a time against every row of A (A stays in L1/L2; each weight row comes from
       memory once and from L1 for the other row groups). The rows two groups ahead are prefetched into
       L2, spread over the passes (one row per pass from the fourth pass on, several when there are fewer)
       so the misses overlap the FMAs instead of queueing behind each other. */
    const int q4 = nr / 4 * 4, passes = (M + 3) / 4, per_pass = passes >= 4 ? 1 : (4 + passes - 1) / passes;
    for (q = 0; q < q4; q += 4) {
      const float *const w[4] = {tessera_row_at(B, ldb, ri, nb + q), tessera_row_at(B, ldb, ri, nb + q + 1),
                                 tessera_row_at(B, ldb, ri, nb + q + 2), tessera_row_at(B, ldb, ri, nb + q + 3)};
      /* Gathered rows are scattered: no software prefetch (there is no next row to stream towards). */
      const float *ahead = !ri && nb + q + 12 <= n1 ? w[0] + (size_t)8 * ldb : NULL;
      for (int m = 0, pass = 0; m < M; m += 4, ++pass) {
        const int row0 = pass * per_pass, rows = row0 >= 4 ? 0 : (row0 + per_pass > 4 ? 4 - row0 : per_pass);
        const tessera_skinny_prefetch pf = {rows ? ahead : NULL, row0, rows};
        if (m + 4 <= M) {
          tessera_skinny_4x4(A + (size_t)m * lda, lda, w, ldb, K, acc + m * TESSERA_SKINNY_NB + q, TESSERA_SKINNY_NB, pf);
        } else {
          for (int r = m; r < M; ++r) {
            const tessera_skinny_prefetch none = {NULL, 0, 0};
            tessera_skinny_1x4(A + (size_t)r * lda, w, ldb, K, acc + r * TESSERA_SKINNY_NB + q, r == m ? pf : none);
          }
        }
      }
    }
    q = q4;
#elif TESSERA_VL > 1
    /* Portable vectors: four weight rows at a time; each load of a row of A feeds four products, and the four pairs of
       accumulators are eight independent FMA chains (enough to cover the FMA latency). */
    for (; q + 4 <= nr; q += 4) {
      const float *b0 = tessera_row_at(B, ldb, ri, nb + q), *b1 = tessera_row_at(B, ldb, ri, nb + q + 1);
      const float *b2 = tessera_row_at(B, ldb, ri, nb + q + 2), *b3 = tessera_row_at(B, ldb, ri, nb + q + 3);
      int m = 0;
      /* Two rows of A against the four weight rows: each weight vector loaded feeds two products
         (16 FMAs per 10 loads instead of 8 per 10). */
      for (; m + 2 <= M && K % TESSERA_VL == 0; m += 2) {
        const float *a = A + (size_t)m * lda, *c = a + lda;
        tessera_vf s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, u0 = {0}, u1 = {0}, u2 = {0}, u3 = {0};
        for (int k = 0; k < K; k += TESSERA_VL) {
          const tessera_vf x = *(const tessera_vfu *)(a + k), y = *(const tessera_vfu *)(c + k);
          const tessera_vf w0 = *(const tessera_vfu *)(b0 + k), w1 = *(const tessera_vfu *)(b1 + k);
          const tessera_vf w2 = *(const tessera_vfu *)(b2 + k), w3 = *(const tessera_vfu *)(b3 + k);
          s0 += x * w0; s1 += x * w1; s2 += x * w2; s3 += x * w3;
          u0 += y * w0; u1 += y * w1; u2 += y * w2; u3 += y * w3;
        }
        float r[8] = {0};
        for (int v = 0; v < TESSERA_VL; ++v) {
          r[0] += s0[v]; r[1] += s1[v]; r[2] += s2[v]; r[3] += s3[v];
          r[4] += u0[v]; r[5] += u1[v]; r[6] += u2[v]; r[7] += u3[v];
        }
        float *row = acc + m * TESSERA_SKINNY_NB + q;
        row[0] = r[0]; row[1] = r[1]; row[2] = r[2]; row[3] = r[3];
        row += TESSERA_SKINNY_NB;
        row[0] = r[4]; row[1] = r[5]; row[2] = r[6]; row[3] = r[7];
      }
      for (; m < M; ++m) {
        const float *a = A + (size_t)m * lda;
        tessera_vf s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, t0 = {0}, t1 = {0}, t2 = {0}, t3 = {0};
        int k = 0;
        for (; k + 2 * TESSERA_VL <= K; k += 2 * TESSERA_VL) {
          const tessera_vf x = *(const tessera_vfu *)(a + k), y = *(const tessera_vfu *)(a + k + TESSERA_VL);
          s0 += x * *(const tessera_vfu *)(b0 + k); t0 += y * *(const tessera_vfu *)(b0 + k + TESSERA_VL);
          s1 += x * *(const tessera_vfu *)(b1 + k); t1 += y * *(const tessera_vfu *)(b1 + k + TESSERA_VL);
          s2 += x * *(const tessera_vfu *)(b2 + k); t2 += y * *(const tessera_vfu *)(b2 + k + TESSERA_VL);
          s3 += x * *(const tessera_vfu *)(b3 + k); t3 += y * *(const tessera_vfu *)(b3 + k + TESSERA_VL);
        }
        s0 += t0; s1 += t1; s2 += t2; s3 += t3;
        float r0 = 0.0f, r1 = 0.0f, r2 = 0.0f, r3 = 0.0f;
        for (int v = 0; v < TESSERA_VL; ++v) { r0 += s0[v]; r1 += s1[v]; r2 += s2[v]; r3 += s3[v]; }
        for (; k < K; ++k) { r0 += a[k] * b0[k]; r1 += a[k] * b1[k]; r2 += a[k] * b2[k]; r3 += a[k] * b3[k]; }
        float *row = acc + m * TESSERA_SKINNY_NB + q;
        row[0] = r0; row[1] = r1; row[2] = r2; row[3] = r3;
      }
    }
#endif
    for (; q < nr; ++q) {
      const float *b = tessera_row_at(B, ldb, ri, nb + q);
      for (int m = 0; m < M; ++m) acc[m * TESSERA_SKINNY_NB + q] = tessera_dot(A + (size_t)m * lda, b, K);
    }
    epi(ctx, 0, M, (int)nb, nr, acc, TESSERA_SKINNY_NB);
  }
}

static inline void tessera_skinny_range(const float *A, int lda, const float *B, int ldb, int M, int K, int64_t n0,
                                        int64_t n1, tessera_epilogue_fn epi, const void *ctx) {
  tessera_skinny_range_ex(A, lda, B, ldb, NULL, M, K, n0, n1, epi, ctx);
}

/* ---------------------------------------------------------------- few rows, row-major right operand */
/* C[m, n] = Σ_k A[m*lda + k] · B[k*ldb + n] for m < M (M <= TESSERA_ROWB_MAX_M), n in [n0, n1): a handful
   of rows against a row-major B (attention probabilities against value rows). Outer products: each row
   of B is read once per 64-column block and every vector of it feeds all rows of A; no packing, no
   horizontal sums. With `ri`, row k of B is gathered through it (tessera_row_at; needs
   n1 <= TESSERA_GATHER_MAX_K). */
#define TESSERA_ROWB_MAX_M 8
#define TESSERA_ROWB_NB 64

static inline void tessera_rowb_range_ex(const float *A, int lda, const float *B, int64_t ldb, const tessera_row_index *ri,
                                         int M, int K, int64_t n0, int64_t n1, tessera_epilogue_fn epi, const void *ctx) {
  float acc[TESSERA_ROWB_MAX_M * TESSERA_ROWB_NB] __attribute__((aligned(64)));
  for (int64_t nb = n0; nb < n1; nb += TESSERA_ROWB_NB) {
    const int nr = (int)(n1 - nb < TESSERA_ROWB_NB ? n1 - nb : TESSERA_ROWB_NB);
#if defined(__AVX512F__)
    /* Up to four vectors of 16 columns; the last may be partial (masked loads: lanes past nr read 0). */
    const int nv = (nr + 15) / 16;
    __mmask16 mask[4];
    for (int v = 0; v < 4; ++v) {
      const int left = nr - 16 * v;
      mask[v] = left >= 16 ? (__mmask16)0xffff : left > 0 ? (__mmask16)((1u << left) - 1u) : 0;
    }
    for (int m0 = 0; m0 < M; m0 += 4) {
      const int mr = M - m0 < 4 ? M - m0 : 4;
      __m512 s[4][4];
      for (int r = 0; r < 4; ++r)
        for (int v = 0; v < 4; ++v) s[r][v] = _mm512_setzero_ps();
      const float *a = A + (size_t)m0 * lda;
      for (int k = 0; k < K; ++k) {
        const float *row = tessera_row_at(B, ldb, ri, k) + nb;
        __m512 bv[4];
        for (int v = 0; v < 4; ++v) bv[v] = v < nv ? _mm512_maskz_loadu_ps(mask[v], row + 16 * v) : _mm512_setzero_ps();
        for (int r = 0; r < 4; ++r) {
          if (r >= mr) break;
          const __m512 x = _mm512_set1_ps(a[(size_t)r * lda + k]);
          for (int v = 0; v < 4; ++v) s[r][v] = _mm512_fmadd_ps(x, bv[v], s[r][v]);
        }
      }
      for (int r = 0; r < mr; ++r)
        for (int v = 0; v < 4; ++v) _mm512_store_ps(acc + (m0 + r) * TESSERA_ROWB_NB + 16 * v, s[r][v]);
    }
#else
    for (int m = 0; m < M; ++m) {
      float *t = acc + m * TESSERA_ROWB_NB;
      for (int c = 0; c < nr; ++c) t[c] = 0.0f;
      for (int k = 0; k < K; ++k) { /* one row lookup per k, not per element; each t[c] still sums over k in order */
        const float a = A[(size_t)m * lda + k], *row = tessera_row_at(B, ldb, ri, k) + nb;
        for (int c = 0; c < nr; ++c) t[c] += a * row[c];
      }
    }
#endif
    epi(ctx, 0, M, (int)nb, nr, acc, TESSERA_ROWB_NB);
  }
}

static inline void tessera_rowb_range(const float *A, int lda, const float *B, int ldb, int M, int K, int64_t n0,
                                      int64_t n1, tessera_epilogue_fn epi, const void *ctx) {
  tessera_rowb_range_ex(A, lda, B, ldb, NULL, M, K, n0, n1, epi, ctx);
}

static inline void tessera_pack_a_rowmajor(const void *ctx, int m0, int mc, int k0, int kc, float *dst) {
  const tessera_gemm_rowmajor *p = (const tessera_gemm_rowmajor *)ctx;
  tessera_pack_a_rowmajor_ex(p->A, p->lda, m0, mc, k0, kc, dst);
}

static inline void tessera_pack_b_rowmajor(const void *ctx, int k0, int kc, int n0, int nc, float *dst) {
  const tessera_gemm_rowmajor *p = (const tessera_gemm_rowmajor *)ctx;
  tessera_pack_b_rowmajor_ex(p->B, p->ldb, k0, kc, n0, nc, dst);
}

static inline void tessera_store_rowmajor(const void *ctx, int m0, int mr, int n0, int nr, const float *acc,
                                          int ldacc) {
  const tessera_gemm_rowmajor *p = (const tessera_gemm_rowmajor *)ctx;
  float *c = p->C + (size_t)m0 * p->ldc + n0;
  /* The driver's next tile is usually the one below (m0 + MR, same n0): prefetch its rows for writing
     so the read-for-ownership misses overlap with the next micro-kernel instead of stalling the stores.
     (A prefetch never faults; the address is formed as an integer, so past-the-end rows are harmless.) */
  for (int r = 0; r < TESSERA_MR; ++r) {
    uintptr_t nx = (uintptr_t)c + ((size_t)(TESSERA_MR + r) * p->ldc) * sizeof(float);
    __builtin_prefetch((const void *)nx, 1, 3);
    __builtin_prefetch((const void *)(nx + TESSERA_NR * sizeof(float) - 1), 1, 3);
  }
  if (nr == TESSERA_NR) {
    for (int r = 0; r < mr; ++r)
      for (int v = 0; v < TESSERA_NV; ++v)
        *(tessera_vfu *)(c + (size_t)r * p->ldc + v * TESSERA_VL) =
            *(const tessera_vf *)(acc + (size_t)r * ldacc + v * TESSERA_VL);
  } else {
    for (int r = 0; r < mr; ++r) memcpy(c + (size_t)r * p->ldc, acc + (size_t)r * ldacc, sizeof(float) * nr);
  }
}

/* ---------------------------------------------------------------- micro-kernel */
/* c[MR x NR] (row stride NR, 64-byte aligned) = (accumulate ? c : 0) + A panel * B panel over kc. */
static inline void tessera_ukernel(int kc, const float *__restrict a, const float *__restrict b,
                                   float *__restrict c, int accumulate) {
  enum { MR = TESSERA_MR, NV = TESSERA_NV, VL = TESSERA_VL, NR = TESSERA_NR };
  tessera_vf acc[MR][NV];
  if (accumulate) {
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = *(const tessera_vf *)(c + r * NR + v * VL);
  } else {
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = (tessera_vf){0};
  }
  for (int k = 0; k < kc; ++k) {
    tessera_vf bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = *(const tessera_vf *)(b + v * VL);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
#if defined(__AVX512F__)
      tessera_vf av = (tessera_vf)_mm512_set1_ps(a[r]);
#else
      tessera_vf av = a[r] - (tessera_vf){0};
#endif
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] += av * bv[v];
    }
    a += MR;
    b += NR;
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) *(tessera_vf *)(c + r * NR + v * VL) = acc[r][v];
}

#if defined(TESSERA_GEMM_BF16)
/* c[MR x NR] = (accumulate ? c : 0) + A pair panel * B pair panel over kp k-pairs (layouts above). */
static inline void tessera_ukernel_bf16(int kp, const uint16_t *__restrict a, const uint16_t *__restrict b,
                                        float *__restrict c, int accumulate) {
  enum { MR = TESSERA_MR, NV = TESSERA_NV, VL = TESSERA_VL, NR = TESSERA_NR };
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = accumulate ? _mm512_load_ps(c + r * NR + v * VL) : _mm512_setzero_ps();
  const uint32_t *a32 = (const uint32_t *)a;
  for (int k = 0; k < kp; ++k) {
    __m512bh bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = (__m512bh)_mm512_load_si512((const void *)(b + (size_t)v * VL * 2));
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32((int)a32[r]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
    }
    a32 += MR;
    b += NR * 2;
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_store_ps(c + r * NR + v * VL, acc[r][v]);
}
#endif

/* ---------------------------------------------------------------- scratch */
typedef struct tessera_scratch {
  float *p;
  size_t cap; /* floats */
} tessera_scratch;

static inline float *tessera_scratch_get(tessera_scratch *s, size_t floats) {
  if (floats > s->cap) {
    size_t n = floats + floats / 4 + 1024;
    size_t bytes = (n * sizeof(float) + TESSERA_ALIGN - 1) / TESSERA_ALIGN * TESSERA_ALIGN;
    float *p = (float *)aligned_alloc(TESSERA_ALIGN, bytes);
    if (!p) return NULL;
    free(s->p);
    s->p = p;
    s->cap = bytes / sizeof(float);
  }
  return s->p;
}

static inline int tessera_round_up(int x, int m) { return (x + m - 1) / m * m; }

#endif /* TESSERA_GEMM_H */

/* ================================================================ implementation */
#if defined(TESSERA_GEMM_IMPLEMENTATION) && !defined(TESSERA_GEMM_IMPLEMENTED)
#define TESSERA_GEMM_IMPLEMENTED

static __thread tessera_scratch tessera_tls_a, tessera_tls_b, tessera_tls_w;

/* Frees this thread's scratch buffers (they are otherwise kept for the thread's lifetime and reused).
   Only needed by threads that exit; persistent pool workers never call it. */
static inline void tessera_gemm_free_scratch(void) {
  tessera_scratch *s[3] = {&tessera_tls_a, &tessera_tls_b, &tessera_tls_w};
  for (int i = 0; i < 3; ++i) {
    free(s[i]->p);
    s[i]->p = NULL;
    s[i]->cap = 0;
  }
}

__attribute__((visibility("default"))) void tessera_gemm_run(const tessera_gemm *g, int thread_index,
                                                             int thread_count) {
  enum { MR = TESSERA_MR, NR = TESSERA_NR };
  const int M = g->M, N = g->N, K = g->K;
  if (M <= 0 || N <= 0 || thread_count <= 0 || thread_index < 0 || thread_index >= thread_count) return;

  /* ---- this thread's output range: split N (in NR units) or M (in MR units), no barrier needed. */
  int m_begin = 0, m_end = M, n_begin = 0, n_end = N;
  if (thread_count > 1) {
    int un = (N + NR - 1) / NR, um = (M + MR - 1) / MR;
    /* Prefer splitting N: it keeps whole-K panels of B private. Split M when N gives too few units
       for an even split. */
    int split_n = un >= 4 * thread_count || (un >= thread_count && un >= um);
    int units = split_n ? un : um;
    int lo = (int)((long long)units * thread_index / thread_count);
    int hi = (int)((long long)units * (thread_index + 1) / thread_count);
    if (lo >= hi) return;
    if (split_n) {
      n_begin = lo * NR;
      n_end = hi * NR < N ? hi * NR : N;
    } else {
      m_begin = lo * MR;
      m_end = hi * MR < M ? hi * MR : M;
    }
  }

  /* ---- blocking */
  int mc = g->mc > 0 ? tessera_round_up(g->mc, MR) : TESSERA_MC_DEFAULT;
  int kc = g->kc > 0 ? g->kc : TESSERA_KC_DEFAULT;
  int nc = g->nc > 0 ? tessera_round_up(g->nc, NR) : TESSERA_NC_DEFAULT;
  if (g->nc <= 0 && K > 0) { /* the packed B panel holds all of K: keep it within TESSERA_B_BUDGET */
    long long cap = (long long)TESSERA_B_BUDGET / ((long long)K * (long long)sizeof(float)) / NR * NR;
    if (cap < nc) nc = cap < NR ? NR : (int)cap;
  }
#if defined(TESSERA_GEMM_BF16)
  const int bf16 = g->pack_a_bf16 && g->pack_b_bf16;
#else
  const int bf16 = 0;
#endif
  if (kc > K) kc = K;
  /* bf16 panels hold k-pairs: every block but the last must have an even depth. */
  if (bf16 && (kc & 1) && kc < K) ++kc;
  {
    int mm = tessera_round_up(m_end - m_begin, MR);
    if (mc > mm) mc = mm;
    int nn = tessera_round_up(n_end - n_begin, NR);
    if (nc > nn) nc = nn;
  }

  __attribute__((aligned(TESSERA_ALIGN))) float tile[TESSERA_MR * TESSERA_NR];

  if (K <= 0) { /* empty reduction: the epilogue sees zeros */
    memset(tile, 0, sizeof tile);
    for (int i = m_begin; i < m_end; i += MR)
      for (int j = n_begin; j < n_end; j += NR)
        g->epilogue(g->ctx, i, m_end - i < MR ? m_end - i : MR, j, n_end - j < NR ? n_end - j : NR, tile, NR);
    return;
  }

  const int nk = (K + kc - 1) / kc; /* number of kc blocks */
  float *abuf = tessera_scratch_get(&tessera_tls_a, (size_t)mc * kc);
  float *bbuf = tessera_scratch_get(&tessera_tls_b, (size_t)K * nc);
  float *wbuf = nk > 1 ? tessera_scratch_get(&tessera_tls_w, (size_t)mc * nc) : NULL;
  if (!abuf || !bbuf || (nk > 1 && !wbuf)) abort();

  for (int jc = n_begin; jc < n_end; jc += nc) {
    const int ncb = n_end - jc < nc ? n_end - jc : nc;
    const int np = (ncb + NR - 1) / NR;
    /* B panel for all of K: kc-block pc lives at bbuf + pc*np*NR (blocks before it are full kc deep);
       bf16 panels are k-pairs of two 16-bit values, so a block's offset in 4-byte units is pc/2*np*NR. */
    for (int pc = 0; pc < K; pc += kc) {
      const int kcb = K - pc < kc ? K - pc : kc;
#if defined(TESSERA_GEMM_BF16)
      if (bf16) {
        g->pack_b_bf16(g->ctx, pc, kcb, jc, ncb, (uint16_t *)(bbuf + (size_t)(pc / 2) * np * NR));
        continue;
      }
#endif
      g->pack_b(g->ctx, pc, kcb, jc, ncb, bbuf + (size_t)pc * np * NR);
    }
    for (int ic = m_begin; ic < m_end; ic += mc) {
      const int mcb = m_end - ic < mc ? m_end - ic : mc;
      const int mp = (mcb + MR - 1) / MR;
      for (int pc = 0; pc < K; pc += kc) {
        const int kcb = K - pc < kc ? K - pc : kc;
        const int first = pc == 0, last = pc + kcb >= K;
        /* Panel depth in 4-byte slots: kcb floats, or (kcb + 1) / 2 bf16 pairs. */
        const int slots = bf16 ? (kcb + 1) / 2 : kcb;
#if defined(TESSERA_GEMM_BF16)
        if (bf16)
          g->pack_a_bf16(g->ctx, ic, mcb, pc, kcb, (uint16_t *)abuf);
        else
#endif
          g->pack_a(g->ctx, ic, mcb, pc, kcb, abuf);
        const float *bblk = bbuf + (size_t)(bf16 ? pc / 2 : pc) * np * NR;
        for (int jp = 0; jp < np; ++jp) {
          const float *bp = bblk + (size_t)jp * slots * NR;
          const int n0 = jc + jp * NR, nr = n_end - n0 < NR ? n_end - n0 : NR;
          for (int ip = 0; ip < mp; ++ip) {
            const float *ap = abuf + (size_t)ip * slots * MR;
            const int m0 = ic + ip * MR, mr = m_end - m0 < MR ? m_end - m0 : MR;
            float *w = first && last ? tile : wbuf + ((size_t)jp * mp + ip) * (MR * NR);
#if defined(TESSERA_GEMM_BF16)
            if (bf16)
              tessera_ukernel_bf16(slots, (const uint16_t *)ap, (const uint16_t *)bp, w, !first);
            else
#endif
              tessera_ukernel(kcb, ap, bp, w, !first);
            if (last) g->epilogue(g->ctx, m0, mr, n0, nr, w, NR);
          }
        }
      }
    }
  }
}
#endif /* TESSERA_GEMM_IMPLEMENTATION */
