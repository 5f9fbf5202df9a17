/* Tessera SGEMM correctness test (exit status != 0 on failure).
   cc -O3 -march=native -pthread gemm_test.c -o /tmp/gemm_test -lm && /tmp/gemm_test
   Also: -mno-avx512f (AVX2 path), -mno-avx2 -mno-avx512f (scalar path), -O0 (UB / -fsanitize). */
#define TESSERA_GEMM_IMPLEMENTATION
#include "gemm.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static int failures = 0, checks = 0;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (float)((double)(rng_state >> 40) * (1.0 / 16777216.0) * 2.0 - 1.0);
}

/* ---------------------------------------------------------------- threading */
typedef struct {
  const tessera_gemm *g;
  int index, count;
} job;

static void *gemm_thread(void *p) {
  job *j = (job *)p;
  tessera_gemm_run(j->g, j->index, j->count);
  tessera_gemm_free_scratch(); /* short-lived test threads: don't leak their scratch */
  return NULL;
}

static void run(const tessera_gemm *g, int threads) {
  pthread_t th[8];
  job jobs[8];
  for (int t = 1; t < threads; ++t) {
    jobs[t] = (job){g, t, threads};
    pthread_create(&th[t], NULL, gemm_thread, &jobs[t]);
  }
  tessera_gemm_run(g, 0, threads); /* index 0 on the calling thread */
  for (int t = 1; t < threads; ++t) pthread_join(th[t], NULL);
}

/* ---------------------------------------------------------------- reference & checks */
static void reference(int M, int N, int K, const float *A, int lda, const float *B, int ldb, double *R) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += (double)A[(size_t)i * lda + k] * B[(size_t)k * ldb + j];
      R[(size_t)i * N + j] = s;
    }
}

/* |got - want| <= tol * (sum_k |a||b| + tiny): float accumulation error bound-ish. */
static void compare(const char *what, int M, int N, int K, int threads, const float *C, int ldc,
                    const double *R, const double *mag) {
  ++checks;
  int bad = 0;
  double worst = 0;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double got = C[(size_t)i * ldc + j], want = R[(size_t)i * N + j];
      double tol = 4e-6 * (K + 4) * (mag ? mag[(size_t)i * N + j] : 1.0) + 1e-30;
      double err = fabs(got - want);
      if (!(err <= tol)) { /* also catches NaN */
        if (bad < 3)
          fprintf(stderr, "  %s M=%d N=%d K=%d T=%d: C[%d][%d] = %.8g, want %.8g\n", what, M, N, K, threads, i,
                  j, got, want);
        ++bad;
      }
      if (err > worst) worst = err;
    }
  if (bad) {
    ++failures;
    fprintf(stderr, "FAIL %s M=%d N=%d K=%d threads=%d: %d bad elements (max err %.3g)\n", what, M, N, K,
            threads, bad, worst);
  }
}

static void magnitudes(int M, int N, int K, const float *A, int lda, const float *B, int ldb, double *mag) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += fabs((double)A[(size_t)i * lda + k] * B[(size_t)k * ldb + j]);
      mag[(size_t)i * N + j] = s + 1e-3;
    }
}

/* Counting epilogue: checks "exactly once per element", then stores. */
typedef struct {
  tessera_gemm_rowmajor rm;
  int *count; /* M x N, ld = N */
  int N;
  int bad_tile;
} counting_ctx;

static void counting_store(const void *ctx, int m0, int mr, int n0, int nr, const float *acc, int ldacc) {
  counting_ctx *c = (counting_ctx *)ctx;
  if (mr < 1 || mr > TESSERA_MR || nr < 1 || nr > TESSERA_NR || ldacc < nr || ((uintptr_t)acc & 63))
    c->bad_tile = 1;
  for (int r = 0; r < mr; ++r)
    for (int j = 0; j < nr; ++j) __atomic_fetch_add(&c->count[(size_t)(m0 + r) * c->N + n0 + j], 1, __ATOMIC_RELAXED);
  tessera_store_rowmajor(&c->rm, m0, mr, n0, nr, acc, ldacc);
}

/* Plain GEMM with row-major callbacks, padded leading dimensions, sentinel around C. */
static void test_plain(int M, int N, int K, int threads, int mc, int kc, int nc) {
  int lda = K + 3, ldb = N + 5, ldc = N + 2;
  float *A = (float *)malloc(sizeof(float) * ((size_t)M * lda + 1));
  float *B = (float *)malloc(sizeof(float) * ((size_t)(K > 0 ? K : 1) * ldb + 1));
  float *C = (float *)malloc(sizeof(float) * ((size_t)M * ldc + 1));
  double *R = (double *)malloc(sizeof(double) * ((size_t)M * N + 1));
  double *mag = (double *)malloc(sizeof(double) * ((size_t)M * N + 1));
  int *cnt = (int *)calloc((size_t)M * N + 1, sizeof(int));
  for (size_t i = 0; i < (size_t)M * lda; ++i) A[i] = frand();
  for (size_t i = 0; i < (size_t)K * ldb; ++i) B[i] = frand();
  for (size_t i = 0; i < (size_t)M * ldc; ++i) C[i] = NAN; /* every element must be written */
  reference(M, N, K, A, lda, B, ldb, R);
  magnitudes(M, N, K, A, lda, B, ldb, mag);
  counting_ctx ctx = {{A, B, C, lda, ldb, ldc}, cnt, N, 0};
  tessera_gemm g = {M, N, K, tessera_pack_a_rowmajor, tessera_pack_b_rowmajor, counting_store, &ctx, mc, kc, nc};
  run(&g, threads);
  compare("plain", M, N, K, threads, C, ldc, R, mag);
  int once = 1, pad = 1;
  for (size_t i = 0; i < (size_t)M * N; ++i) once &= cnt[i] == 1;
  for (int i = 0; i < M; ++i) /* padding columns of C untouched */
    for (int j = N; j < ldc; ++j) pad &= isnan(C[(size_t)i * ldc + j]);
  if (!once || !pad || ctx.bad_tile) {
    ++failures;
    fprintf(stderr, "FAIL plain M=%d N=%d K=%d T=%d mc=%d kc=%d nc=%d: once=%d pad=%d tile_ok=%d\n", M, N, K,
            threads, mc, kc, nc, once, pad, !ctx.bad_tile);
  }
  free(A), free(B), free(C), free(R), free(mag), free(cnt);
}

/* ---------------------------------------------------------------- fused prologue / epilogue */
/* Prologue: A' = relu(scale[k] * A) applied while packing (a per-column scale, like a fused
   normalisation). Epilogue: C = relu(acc + bias[n]) + residual[m][n]. */
typedef struct {
  const float *A, *B, *scale, *bias, *residual;
  float *C;
  int M, K, N;
} fused_ctx;

static void fused_pack_a(const void *vctx, int m0, int mc, int k0, int kc, float *dst) {
  const fused_ctx *c = (const fused_ctx *)vctx;
  for (int i = 0; i < mc; i += TESSERA_MR, dst += (size_t)kc * TESSERA_MR)
    for (int k = 0; k < kc; ++k)
      for (int r = 0; r < TESSERA_MR; ++r) {
        int m = m0 + i + r;
        float v = 0.0f;
        if (i + r < mc) {
          v = c->A[(size_t)m * c->K + k0 + k] * c->scale[k0 + k];
          v = v > 0 ? v : 0;
        }
        dst[(size_t)k * TESSERA_MR + r] = v;
      }
}

static void fused_pack_b(const void *vctx, int k0, int kc, int n0, int nc, float *dst) {
  const fused_ctx *c = (const fused_ctx *)vctx;
  tessera_pack_b_rowmajor_ex(c->B, c->N, k0, kc, n0, nc, dst);
}

static void fused_epilogue(const void *vctx, int m0, int mr, int n0, int nr, const float *acc, int ldacc) {
  const fused_ctx *c = (const fused_ctx *)vctx;
  for (int r = 0; r < mr; ++r)
    for (int j = 0; j < nr; ++j) {
      float v = acc[r * ldacc + j] + c->bias[n0 + j];
      v = v > 0 ? v : 0;
      size_t o = (size_t)(m0 + r) * c->N + n0 + j;
      c->C[o] = v + c->residual[o];
    }
}

static void test_fused(int M, int N, int K, int threads, int kc) {
  float *A = (float *)malloc(sizeof(float) * M * K + 4), *B = (float *)malloc(sizeof(float) * K * N + 4);
  float *A2 = (float *)calloc((size_t)M * K + 1, sizeof(float)), *scale = (float *)malloc(sizeof(float) * K + 4);
  float *bias = (float *)malloc(sizeof(float) * N), *res = (float *)malloc(sizeof(float) * M * N);
  float *C = (float *)malloc(sizeof(float) * M * N);
  double *R = (double *)malloc(sizeof(double) * M * N), *mag = (double *)malloc(sizeof(double) * M * N);
  for (int i = 0; i < M * K; ++i) A[i] = frand();
  for (int i = 0; i < K * N; ++i) B[i] = frand();
  for (int i = 0; i < K; ++i) scale[i] = 0.5f + frand();
  for (int i = 0; i < N; ++i) bias[i] = frand();
  for (int i = 0; i < M * N; ++i) res[i] = frand(), C[i] = NAN;
  for (int i = 0; i < M; ++i)
    for (int k = 0; k < K; ++k) {
      float v = A[i * K + k] * scale[k];
      A2[i * K + k] = v > 0 ? v : 0;
    }
  reference(M, N, K, A2, K, B, N, R);
  magnitudes(M, N, K, A2, K, B, N, mag);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double v = R[i * N + j] + bias[j];
      R[i * N + j] = (v > 0 ? v : 0) + res[i * N + j];
      mag[i * N + j] += fabs(bias[j]) + fabs(res[i * N + j]);
    }
  fused_ctx ctx = {A, B, scale, bias, res, C, M, K, N};
  tessera_gemm g = {M, N, K, fused_pack_a, fused_pack_b, fused_epilogue, &ctx, 0, kc, 0};
  run(&g, threads);
  compare("fused(prologue relu*scale, epilogue bias+relu+residual)", M, N, K, threads, C, N, R, mag);
  free(A), free(B), free(A2), free(scale), free(bias), free(res), free(C), free(R), free(mag);
}

/* ---------------------------------------------------------------- skinny products */
/* C = A · Wᵀ for few rows of A, W stored row by row; every output handed to the epilogue exactly once. */
typedef struct {
  float *C;
  int *count;
  int N;
} skinny_ctx;

static void skinny_store(const void *v, int m0, int mr, int n0, int nr, const float *acc, int ldacc) {
  const skinny_ctx *c = (const skinny_ctx *)v;
  for (int r = 0; r < mr; ++r)
    for (int j = 0; j < nr; ++j) {
      c->C[(size_t)(m0 + r) * c->N + n0 + j] = acc[(size_t)r * ldacc + j];
      c->count[(size_t)(m0 + r) * c->N + n0 + j]++;
    }
}

/* The unpacked few-row paths: `fn` computes C = A · B for columns [n0, n1), with B stored as W[n][k]
   (`by_rows`: a weight read as Wᵀ, tessera_skinny_range_ex) or as B[k][n] (tessera_rowb_range_ex). Padding
   past each stored row is NaN, so a read beyond K (or N) poisons the result. `gathered`: B's rows are
   scattered over a larger pool (rows of NaN in between) and read through an index with a stride of 2,
   where every seventh index is out of range (-1 or the pool's size): those rows read as zeros. */
typedef void (*rows_fn)(const float *A, int lda, const float *B, int64_t ldb, const tessera_row_index *ri, int M, int K,
                        int64_t n0, int64_t n1, tessera_epilogue_fn epi, const void *ctx);

static void test_rows(const char *what, rows_fn fn, int by_rows, int gathered, int M, int N, int K, int64_t n0, int64_t n1) {
  const int lda = K + 5, inner = by_rows ? K : N, outer = by_rows ? N : K, ldb = inner + 3;
  float *A = (float *)malloc(sizeof(float) * ((size_t)M * lda + 1)), *B = (float *)malloc(sizeof(float) * ((size_t)outer * ldb + 1));
  float *At = (float *)malloc(sizeof(float) * ((size_t)M * K + 1)), *Bt = (float *)malloc(sizeof(float) * ((size_t)K * N + 1));
  float *C = (float *)malloc(sizeof(float) * ((size_t)M * N + 1));
  int *count = (int *)calloc((size_t)M * N + 1, sizeof(int));
  double *R = (double *)malloc(sizeof(double) * ((size_t)M * N + 1)), *mag = (double *)malloc(sizeof(double) * ((size_t)M * N + 1));
  for (size_t i = 0; i < (size_t)M * lda; ++i) A[i] = (i % lda) < (size_t)K ? frand() : NAN;
  for (size_t i = 0; i < (size_t)outer * ldb; ++i) B[i] = (i % ldb) < (size_t)inner ? frand() : NAN;
  /* The gathered layout: logical row j at pool row pool_rows - 1 - 2j (reversed, NaN rows between). */
  const int64_t pool_rows = 2 * (int64_t)outer + 1;
  int32_t *idx = (int32_t *)malloc(sizeof(int32_t) * (2 * (size_t)outer + 1));
  float *P = (float *)malloc(sizeof(float) * ((size_t)pool_rows * ldb + 1));
  for (size_t i = 0; i < (size_t)pool_rows * ldb; ++i) P[i] = NAN;
  for (int j = 0; j < outer; ++j) {
    const int invalid = gathered && j % 7 == 3;
    idx[2 * j] = invalid ? (j % 2 ? -1 : (int32_t)pool_rows) : (int32_t)(pool_rows - 1 - 2 * j);
    idx[2 * j + 1] = -99; /* between strided entries: never read */
    if (invalid)
      for (int i = 0; i < inner; ++i) B[(size_t)j * ldb + i] = 0.0f;
    else
      memcpy(P + (size_t)(pool_rows - 1 - 2 * j) * ldb, B + (size_t)j * ldb, sizeof(float) * (size_t)ldb);
  }
  for (int m = 0; m < M; ++m)
    for (int k = 0; k < K; ++k) At[(size_t)m * K + k] = A[(size_t)m * lda + k];
  for (int k = 0; k < K; ++k)
    for (int n = 0; n < N; ++n) Bt[(size_t)k * N + n] = by_rows ? B[(size_t)n * ldb + k] : B[(size_t)k * ldb + n];
  for (size_t i = 0; i < (size_t)M * N; ++i) C[i] = NAN;
  reference(M, N, K, At, K, Bt, N, R);
  magnitudes(M, N, K, At, K, Bt, N, mag);
  skinny_ctx ctx = {C, count, N};
  const tessera_row_index ri = {idx, 2, pool_rows};
  if (gathered) fn(A, lda, P, ldb, &ri, M, K, n0, n1, skinny_store, &ctx);
  else fn(A, lda, B, ldb, NULL, M, K, n0, n1, skinny_store, &ctx);
  /* Only columns [n0, n1) are computed: compare those (others must be untouched). */
  int once = 1;
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      const int in = n >= n0 && n < n1;
      once &= count[(size_t)m * N + n] == in;
      if (!in) C[(size_t)m * N + n] = (float)R[(size_t)m * N + n];
    }
  compare(what, M, N, K, 1, C, N, R, mag);
  if (!once) {
    ++failures;
    fprintf(stderr, "FAIL %s M=%d N=%d K=%d [%lld, %lld): an output was not stored exactly once\n", what, M, N, K,
            (long long)n0, (long long)n1);
  }
  free(A), free(B), free(At), free(Bt), free(C), free(count), free(R), free(mag), free(idx), free(P);
}

static void test_skinny(int M, int N, int K, int64_t n0, int64_t n1) {
  test_rows("skinny", tessera_skinny_range_ex, 1, 0, M, N, K, n0, n1);
  test_rows("skinny gathered", tessera_skinny_range_ex, 1, 1, M, N, K, n0, n1);
}

static void test_rowb(int M, int N, int K, int64_t n0, int64_t n1) {
  test_rows("rowb", tessera_rowb_range_ex, 0, 0, M, N, K, n0, n1);
  test_rows("rowb gathered", tessera_rowb_range_ex, 0, 1, M, N, K, n0, n1);
}

/* ---------------------------------------------------------------- bf16 operands */
/* Row-major bf16 A and B with both packer sets: the pair packers (used where TESSERA_GEMM_BF16) and the
   widening ones (used elsewhere). Either way the result is the f32-accumulated product of the bf16 values. */
typedef struct {
  const uint16_t *A, *B;
  float *C;
  int lda, ldb, ldc;
} bf16_ctx;

static uint16_t to_bf16(float f) { /* round to nearest even (inputs are finite) */
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static void bf16_pack_a(const void *v, int m0, int mc, int k0, int kc, float *dst) {
  const bf16_ctx *c = (const bf16_ctx *)v;
  tessera_pack_a_rowmajor_u16(c->A, c->lda, m0, mc, k0, kc, dst, 1);
}
static void bf16_pack_b(const void *v, int k0, int kc, int n0, int nc, float *dst) {
  const bf16_ctx *c = (const bf16_ctx *)v;
  tessera_pack_b_rowmajor_u16(c->B, c->ldb, k0, kc, n0, nc, dst, 1);
}
static void bf16_pack_a2(const void *v, int m0, int mc, int k0, int kc, uint16_t *dst) {
  const bf16_ctx *c = (const bf16_ctx *)v;
  tessera_pack_a_rowmajor_bf16(c->A, c->lda, m0, mc, k0, kc, dst);
}
static void bf16_pack_b2(const void *v, int k0, int kc, int n0, int nc, uint16_t *dst) {
  const bf16_ctx *c = (const bf16_ctx *)v;
  tessera_pack_b_rowmajor_bf16(c->B, c->ldb, k0, kc, n0, nc, dst);
}
static void bf16_store(const void *v, int m0, int mr, int n0, int nr, const float *acc, int ldacc) {
  const bf16_ctx *c = (const bf16_ctx *)v;
  for (int r = 0; r < mr; ++r)
    for (int j = 0; j < nr; ++j) c->C[(size_t)(m0 + r) * c->ldc + n0 + j] = acc[(size_t)r * ldacc + j];
}

static void test_bf16(int M, int N, int K, int threads, int kc) {
  /* Padded rows; the word after each row of A and B is NaN, so a pair read past the end of an odd-K row
     (instead of a zero) poisons the result. */
  const int lda = K + 1, ldb = N + 3, ldc = N;
  uint16_t *A = (uint16_t *)malloc(sizeof(uint16_t) * ((size_t)M * lda + 2));
  uint16_t *B = (uint16_t *)malloc(sizeof(uint16_t) * ((size_t)(K + 1) * ldb + 2));
  float *Af = (float *)malloc(sizeof(float) * ((size_t)M * K + 1)), *Bf = (float *)malloc(sizeof(float) * ((size_t)K * N + 1));
  float *C = (float *)malloc(sizeof(float) * ((size_t)M * N + 1));
  double *R = (double *)malloc(sizeof(double) * ((size_t)M * N + 1)), *mag = (double *)malloc(sizeof(double) * ((size_t)M * N + 1));
  for (size_t i = 0; i < (size_t)M * lda + 2; ++i) A[i] = 0x7fc0; /* NaN */
  for (size_t i = 0; i < (size_t)(K + 1) * ldb + 2; ++i) B[i] = 0x7fc0;
  for (int i = 0; i < M; ++i)
    for (int k = 0; k < K; ++k) {
      A[(size_t)i * lda + k] = to_bf16(frand());
      uint32_t u = (uint32_t)A[(size_t)i * lda + k] << 16;
      memcpy(&Af[(size_t)i * K + k], &u, 4);
    }
  for (int k = 0; k < K; ++k)
    for (int j = 0; j < N; ++j) {
      B[(size_t)k * ldb + j] = to_bf16(frand());
      uint32_t u = (uint32_t)B[(size_t)k * ldb + j] << 16;
      memcpy(&Bf[(size_t)k * N + j], &u, 4);
    }
  for (size_t i = 0; i < (size_t)M * N; ++i) C[i] = NAN;
  reference(M, N, K, Af, K, Bf, N, R);
  magnitudes(M, N, K, Af, K, Bf, N, mag);
  bf16_ctx ctx = {A, B, C, lda, ldb, ldc};
  tessera_gemm g = {M, N, K, bf16_pack_a, bf16_pack_b, bf16_store, &ctx, 0, kc, 0, bf16_pack_a2, bf16_pack_b2};
  run(&g, threads);
  compare("bf16", M, N, K, threads, C, ldc, R, mag);
  free(A), free(B), free(Af), free(Bf), free(C), free(R), free(mag);
}

int main(void) {
  printf("isa=%s MR=%d NR=%d defaults mc=%d kc=%d nc=%d\n", TESSERA_GEMM_ISA, TESSERA_MR, TESSERA_NR,
         TESSERA_MC_DEFAULT, TESSERA_KC_DEFAULT, TESSERA_NC_DEFAULT);

  /* Tiny and degenerate shapes, 1 and 2 threads. */
  int tiny[] = {1, 2, 3, 5, 7};
  for (int a = 0; a < 5; ++a)
    for (int b = 0; b < 5; ++b)
      for (int c = 0; c < 5; ++c)
        for (int t = 1; t <= 2; ++t) test_plain(tiny[a], tiny[b], tiny[c], t, 0, 0, 0);
  for (int t = 1; t <= 3; ++t) { /* K = 0: the epilogue sees zeros */
    test_plain(1, 1, 0, t, 0, 0, 0);
    test_plain(17, 45, 0, t, 0, 0, 0);
    test_plain(70, 3, 0, t, 0, 0, 0);
  }

  /* Odd sizes 1..70 around MR / NR multiples. */
  int odd[] = {1, 3, 6, 8, 13, 14, 15, 16, 17, 27, 28, 29, 31, 32, 33, 47, 48, 49, 63, 64, 65, 70};
  int nodd = (int)(sizeof odd / sizeof odd[0]);
  for (int a = 0; a < nodd; ++a)
    for (int b = 0; b < nodd; ++b) {
      int K = odd[(a * 7 + b * 3) % nodd];
      test_plain(odd[a], odd[b], K, 1 + (a + b) % 2, 0, 0, 0);
    }

  /* K > kc: partial sums across kc blocks (small explicit blocking to exercise all loops,
     including several mc / nc blocks and kc not dividing K). */
  int kcs[] = {1, 7, 16, 33};
  for (int i = 0; i < 4; ++i)
    for (int t = 1; t <= 2; ++t) {
      test_plain(70, 69, 100, t, 28, kcs[i], 64);
      test_plain(29, 130, 67, t, 1, kcs[i], 1);  /* mc, nc rounded up to MR, NR */
      test_plain(1, 1, 50, t, 0, kcs[i], 0);
      test_plain(130, 5, 45, t, 14, kcs[i], 0);  /* N small: split M */
    }
  /* Default blocking, K larger than the default kc, and medium sizes. */
  test_plain(37, 41, TESSERA_KC_DEFAULT * 2 + 37, 1, 0, 0, 0);
  test_plain(37, 41, TESSERA_KC_DEFAULT * 2 + 37, 2, 0, 0, 0);
  test_plain(200, 300, 257, 2, 0, 0, 0);
  test_plain(300, 200, 1100, 2, 0, 0, 0);
  test_plain(257, 1100, 64, 1, 0, 0, 0); /* N > default nc */
  test_plain(129, 2100, 31, 2, 0, 0, 0);
  test_plain(2, 1000, 40, 3, 0, 0, 0);   /* 3 threads, thin M */
  test_plain(1000, 2, 40, 3, 0, 0, 0);   /* 3 threads, thin N */
  test_plain(5, 5, 5, 8, 0, 0, 0);       /* more threads than tiles */

  /* Fused prologue / epilogue. */
  test_fused(50, 70, 33, 1, 0);
  test_fused(50, 70, 33, 2, 0);
  test_fused(67, 45, 300, 2, 64); /* across kc blocks */
  test_fused(1, 1, 1, 1, 0);

  /* Skinny products: every M up to the limit (4-row blocks and leftovers), K with masked tails, column
     ranges that start and end off the 4-column and block boundaries. */
  for (int M = 1; M <= TESSERA_SKINNY_MAX_M; M += (M < 9 ? 1 : 7)) {
    test_skinny(M, 70, 37, 0, 70);
    test_skinny(M, 131, 64, 3, 130);
  }
  test_skinny(TESSERA_SKINNY_MAX_M, 9, 1, 0, 9);
  test_skinny(5, 300, 513, 0, 300);
  test_skinny(16, 1000, 16, 250, 1000);
  /* Few rows against a row-major B: every M up to the limit, N around the 16-column vectors and the
     64-column blocks (masked tails), column ranges off the block boundaries, K = 1. */
  for (int M = 1; M <= TESSERA_ROWB_MAX_M; ++M) {
    test_rowb(M, 64, 128, 0, 64);
    test_rowb(M, 77, 33, 5, 77);
    test_rowb(M, 200, 1, 0, 200);
  }
  test_rowb(2, 15, 200, 0, 15);

  /* bf16 operands: odd K (a half-filled last pair), odd kc (rounded up to pairs), edges, threads. */
#if defined(TESSERA_GEMM_BF16)
  printf("bf16 operands: vdpbf16ps micro-kernel\n");
#else
  printf("bf16 operands: widened to f32\n");
#endif
  for (int a = 0; a < nodd; a += 3)
    for (int b = 0; b < nodd; b += 2) test_bf16(odd[a], odd[b], odd[(a * 5 + b) % nodd], 1 + (a + b) % 2, 0);
  for (int i = 0; i < 4; ++i)
    for (int t = 1; t <= 2; ++t) {
      test_bf16(70, 69, 101, t, kcs[i]);
      test_bf16(3, 130, 67, t, kcs[i]);
    }
  test_bf16(200, 300, 1100, 2, 0);
  test_bf16(129, 2100, 31, 2, 0);

  tessera_gemm_free_scratch();
  if (failures) {
    fprintf(stderr, "%d of %d checks FAILED\n", failures, checks);
    return 1;
  }
  printf("all %d checks passed\n", checks);
  return 0;
}
