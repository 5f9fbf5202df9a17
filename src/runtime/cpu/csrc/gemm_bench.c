/* Tessera SGEMM benchmark.
   cc -O3 -march=native -pthread gemm_bench.c -o /tmp/gemm_bench && /tmp/gemm_bench
   Optional args: sizes (e.g. `/tmp/gemm_bench 1024 2048`). Env TESSERA_MC / TESSERA_KC / TESSERA_NC override
   the blocking (for tuning); TESSERA_REPS sets the number of timed runs per round and TESSERA_ROUNDS the
   number of rounds (best of all is reported). TESSERA_BENCH_BF16=1 times bf16 operands instead;
   TESSERA_BENCH_SKINNY=1 times few-row products against a weight stored row by row (decode-sized
   M = 1..64), the skinny path against the packed driver, on one thread; TESSERA_BENCH_SKINNY=2 times the
   skinny path on 1 and 2 threads over 256 MB of 1408x512 weights cycled through, so that every weight
   comes from DRAM as in a decode step (GFLOP/s, GB/s of weights, and ms per 225 MB: one step of the
   56M-parameter serving benchmark model). */
#define _GNU_SOURCE
#define TESSERA_GEMM_IMPLEMENTATION
#include "gemm.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- FMA peak */
/* 12 independent vector accumulators: enough to cover FMA latency x throughput on current cores. */
typedef struct { long iters; double gflops; } peak_arg;

static void *peak_thread(void *p) {
  peak_arg *a = (peak_arg *)p;
  tessera_vf x = 0.9999999f - (tessera_vf){0}, y = (float)(a->iters & 1) * 1e-7f - (tessera_vf){0};
  tessera_vf c0 = x, c1 = c0 + 1, c2 = c0 + 2, c3 = c0 + 3, c4 = c0 + 4, c5 = c0 + 5, c6 = c0 + 6, c7 = c0 + 7,
             c8 = c0 + 8, c9 = c0 + 9, c10 = c0 + 10, c11 = c0 + 11;
  double t = now();
  for (long i = 0; i < a->iters; ++i) {
    c0 = c0 * x + y; c1 = c1 * x + y; c2 = c2 * x + y; c3 = c3 * x + y;
    c4 = c4 * x + y; c5 = c5 * x + y; c6 = c6 * x + y; c7 = c7 * x + y;
    c8 = c8 * x + y; c9 = c9 * x + y; c10 = c10 * x + y; c11 = c11 * x + y;
  }
  t = now() - t;
  tessera_vf s = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11;
  volatile float sink = ((float *)&s)[0];
  (void)sink;
  a->gflops = 12.0 * 2 * TESSERA_VL * a->iters / t / 1e9;
  return NULL;
}

static double fma_peak(int threads) {
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    pthread_t th[64];
    peak_arg args[64];
    for (int t = 0; t < threads; ++t) {
      args[t].iters = 50000000;
      pthread_create(&th[t], NULL, peak_thread, &args[t]);
    }
    double sum = 0;
    for (int t = 0; t < threads; ++t) {
      pthread_join(th[t], NULL);
      sum += args[t].gflops;
    }
    if (sum > best) best = sum;
  }
  return best;
}

/* ---------------------------------------------------------------- GEMM */
/* A minimal persistent pool (like the runtime's): workers spin briefly on a generation counter and then
   sleep on a condition variable; the calling thread runs index 0 and then waits for the others. This
   keeps pthread_create out of the timings without burning a core while idle. */
typedef struct {
  const tessera_gemm *g;
  int count;
  unsigned gen;  /* bumped to start a job */
  int pending;   /* workers still running the current job */
  int quit;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} pool_t;

static pool_t pool = {NULL, 0, 0, 0, 0, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};
static pthread_t pool_threads[64];
static int pool_size = 1;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static void *pool_worker(void *p) {
  int index = (int)(intptr_t)p;
  unsigned seen = 0;
  for (;;) {
    unsigned gen;
    long spins = 0;
    while ((gen = __atomic_load_n(&pool.gen, __ATOMIC_ACQUIRE)) == seen) {
      if (__atomic_load_n(&pool.quit, __ATOMIC_ACQUIRE)) return NULL;
      if (++spins < 200000) {
        cpu_relax();
        continue;
      }
      pthread_mutex_lock(&pool.mu);
      while (__atomic_load_n(&pool.gen, __ATOMIC_ACQUIRE) == seen && !__atomic_load_n(&pool.quit, __ATOMIC_ACQUIRE))
        pthread_cond_wait(&pool.cv, &pool.mu);
      pthread_mutex_unlock(&pool.mu);
    }
    seen = gen;
    if (index < pool.count) tessera_gemm_run(pool.g, index, pool.count);
    __atomic_fetch_sub(&pool.pending, 1, __ATOMIC_ACQ_REL);
  }
}

static void pool_start(int threads) {
  pool_size = threads;
  for (int t = 1; t < threads; ++t) pthread_create(&pool_threads[t], NULL, pool_worker, (void *)(intptr_t)t);
}

static void pool_stop(void) {
  pthread_mutex_lock(&pool.mu);
  __atomic_store_n(&pool.quit, 1, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&pool.cv);
  pthread_mutex_unlock(&pool.mu);
  for (int t = 1; t < pool_size; ++t) pthread_join(pool_threads[t], NULL);
}

static void run_threads(const tessera_gemm *g, int threads) {
  if (threads == 1) {
    tessera_gemm_run(g, 0, 1);
    return;
  }
  pool.g = g;
  pool.count = threads;
  __atomic_store_n(&pool.pending, pool_size - 1, __ATOMIC_RELAXED);
  pthread_mutex_lock(&pool.mu);
  __atomic_fetch_add(&pool.gen, 1, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&pool.cv);
  pthread_mutex_unlock(&pool.mu);
  tessera_gemm_run(g, 0, threads);
  while (__atomic_load_n(&pool.pending, __ATOMIC_ACQUIRE) != 0) cpu_relax();
}

static int env_int(const char *name, int def) {
  const char *s = getenv(name);
  return s ? atoi(s) : def;
}

/* bf16 operands (TESSERA_BENCH_BF16=1): row-major uint16 A and B through the pair packers (the vdpbf16ps
   kernel where the build has it, else the widening packers and the f32 kernel). */
typedef struct {
  const uint16_t *A, *B;
  tessera_gemm_rowmajor out;
} bf16_bench_ctx;
static void bb_pack_a(const void *v, int m0, int mc, int k0, int kc, float *dst) {
  const bf16_bench_ctx *c = (const bf16_bench_ctx *)v;
  tessera_pack_a_rowmajor_u16(c->A, c->out.lda, m0, mc, k0, kc, dst, 1);
}
static void bb_pack_b(const void *v, int k0, int kc, int n0, int nc, float *dst) {
  const bf16_bench_ctx *c = (const bf16_bench_ctx *)v;
  tessera_pack_b_rowmajor_u16(c->B, c->out.ldb, k0, kc, n0, nc, dst, 1);
}
static void bb_pack_a2(const void *v, int m0, int mc, int k0, int kc, uint16_t *dst) {
  const bf16_bench_ctx *c = (const bf16_bench_ctx *)v;
  tessera_pack_a_rowmajor_bf16(c->A, c->out.lda, m0, mc, k0, kc, dst);
}
static void bb_pack_b2(const void *v, int k0, int kc, int n0, int nc, uint16_t *dst) {
  const bf16_bench_ctx *c = (const bf16_bench_ctx *)v;
  tessera_pack_b_rowmajor_bf16(c->B, c->out.ldb, k0, kc, n0, nc, dst);
}
static void bb_store(const void *v, int m0, int mr, int n0, int nr, const float *acc, int ldacc) {
  tessera_store_rowmajor(&((const bf16_bench_ctx *)v)->out, m0, mr, n0, nr, acc, ldacc);
}

static double bench(int n, int threads, int reps) {
  float *A = (float *)aligned_alloc(64, sizeof(float) * n * n);
  float *B = (float *)aligned_alloc(64, sizeof(float) * n * n);
  float *C = (float *)aligned_alloc(64, sizeof(float) * n * n);
  for (long i = 0; i < (long)n * n; ++i) {
    A[i] = (float)((i * 7) % 13) * 0.1f - 0.6f;
    B[i] = (float)((i * 5) % 11) * 0.1f - 0.5f;
    C[i] = 0;
  }
  tessera_gemm_rowmajor ctx = {A, B, C, n, n, n};
  tessera_gemm g = {n, n, n, tessera_pack_a_rowmajor, tessera_pack_b_rowmajor, tessera_store_rowmajor, &ctx,
                    env_int("TESSERA_MC", 0), env_int("TESSERA_KC", 0), env_int("TESSERA_NC", 0)};
  uint16_t *A16 = NULL, *B16 = NULL;
  bf16_bench_ctx bctx;
  if (env_int("TESSERA_BENCH_BF16", 0)) {
    A16 = (uint16_t *)malloc(sizeof(uint16_t) * n * n);
    B16 = (uint16_t *)malloc(sizeof(uint16_t) * n * n);
    for (long i = 0; i < (long)n * n; ++i) { /* truncation is fine for timing */
      uint32_t ua, ub;
      memcpy(&ua, &A[i], 4), memcpy(&ub, &B[i], 4);
      A16[i] = (uint16_t)(ua >> 16), B16[i] = (uint16_t)(ub >> 16);
    }
    bctx = (bf16_bench_ctx){A16, B16, ctx};
    g = (tessera_gemm){n, n, n, bb_pack_a, bb_pack_b, bb_store, &bctx, g.mc, g.kc, g.nc, bb_pack_a2, bb_pack_b2};
  }
  run_threads(&g, threads); /* warm-up: page faults, scratch allocation */
  double best = 1e30;
  int r = reps;
  if ((double)n * n * n < 1e8) r *= 8;
  for (int i = 0; i < r; ++i) {
    double t = now();
    run_threads(&g, threads);
    t = now() - t;
    if (t < best) best = t;
  }
  free(A), free(B), free(C), free(A16), free(B16);
  return 2.0 * n * n * n / best / 1e9;
}

static void print_load(const char *when) {
  FILE *f = fopen("/proc/loadavg", "r");
  if (!f) return;
  char buf[128];
  if (fgets(buf, sizeof buf, f)) printf("loadavg %s: %s", when, buf);
  fclose(f);
}

/* ---------------------------------------------------------------- few rows (TESSERA_BENCH_SKINNY) */
typedef struct {
  const float *A, *W;
  float *C;
  int K, N;
} skinny_bench_ctx;
static void sb_pack_a(const void *v, int m0, int mc, int k0, int kc, float *dst) {
  const skinny_bench_ctx *c = (const skinny_bench_ctx *)v;
  tessera_pack_a_rowmajor_ex(c->A, c->K, m0, mc, k0, kc, dst);
}
static void sb_pack_b(const void *v, int k0, int kc, int n0, int nc, float *dst) {
  const skinny_bench_ctx *c = (const skinny_bench_ctx *)v;
  tessera_pack_b_colmajor(c->W, c->K, k0, kc, n0, nc, dst);
}
static void sb_store(const void *v, int m0, int mr, int n0, int nr, const float *acc, int ldacc) {
  const skinny_bench_ctx *c = (const skinny_bench_ctx *)v;
  for (int r = 0; r < mr; ++r) memcpy(c->C + (size_t)(m0 + r) * c->N + n0, acc + (size_t)r * ldacc, sizeof(float) * nr);
}

static int bench_skinny(void) {
  const int shapes[][2] = {{1408, 512}, {512, 1408}, {32000, 512}}, Ms[] = {1, 4, 16, 32, 64};
  const int reps = env_int("TESSERA_REPS", 7);
  printf("few rows x weight rows (C = A Wt), 1 thread, best of %d: GFLOP/s skinny path | packed driver\n", reps);
  for (int s = 0; s < 3; ++s) {
    const int N = shapes[s][0], K = shapes[s][1];
    float *A = (float *)aligned_alloc(64, sizeof(float) * 64 * K), *W = (float *)aligned_alloc(64, sizeof(float) * (size_t)N * K);
    float *C = (float *)aligned_alloc(64, sizeof(float) * 64 * (size_t)N);
    for (long i = 0; i < 64L * K; ++i) A[i] = (float)(i % 7) * 0.1f;
    for (long i = 0; i < (long)N * K; ++i) W[i] = (float)(i % 5) * 0.1f;
    for (int mi = 0; mi < 5; ++mi) {
      const int M = Ms[mi];
      skinny_bench_ctx c = {A, W, C, K, N};
      tessera_gemm g = {M, N, K, sb_pack_a, sb_pack_b, sb_store, &c, 0, 0, 0};
      double bs = 1e30, bd = 1e30;
      for (int r = 0; r < reps; ++r) {
        double t = now();
        tessera_skinny_range(A, K, W, K, M, K, 0, N, sb_store, &c);
        t = now() - t;
        if (t < bs) bs = t;
        t = now();
        tessera_gemm_run(&g, 0, 1);
        t = now() - t;
        if (t < bd) bd = t;
      }
      const double f = 2.0 * M * N * K / 1e9;
      printf("N=%5d K=%5d M=%2d: %6.1f | %6.1f\n", N, K, M, f / bs, f / bd);
    }
    free(A), free(W), free(C);
  }
  return 0;
}

/* ---------------------------------------------------------------- few rows, weights from DRAM */
typedef struct {
  const float *A;
  float **W;
  float *C;
  int nmat, N, K, M, t, T;
  pthread_barrier_t *bar;
} skinny_dram_arg;

static void *skinny_dram_thread(void *v) {
  const skinny_dram_arg *a = (const skinny_dram_arg *)v;
  skinny_bench_ctx c = {a->A, NULL, a->C, a->K, a->N};
  const int64_t per = (a->N / 4 + a->T - 1) / a->T * 4, n0 = a->t * per, n1 = n0 + per > a->N ? a->N : n0 + per;
  for (int i = 0; i < a->nmat; ++i) {
    tessera_skinny_range(a->A, a->K, a->W[i], a->K, a->M, a->K, n0, n1, sb_store, &c);
    pthread_barrier_wait(a->bar); /* as the kernels of a step: one product after the other */
  }
  return NULL;
}

static int bench_skinny_dram(void) {
  const int N = 1408, K = 512, Ms[] = {1, 4, 8, 16, 24, 32, 48, 64}, reps = env_int("TESSERA_REPS", 3);
  const int nmat = (int)((256u << 20) / ((size_t)N * K * sizeof(float)));
  float **W = (float **)malloc(sizeof(float *) * nmat);
  for (int i = 0; i < nmat; ++i) {
    W[i] = (float *)aligned_alloc(64, sizeof(float) * (size_t)N * K);
    for (long j = 0; j < (long)N * K; ++j) W[i][j] = (float)(j % 5) * 0.1f;
  }
  float *A = (float *)aligned_alloc(64, sizeof(float) * 64 * K), *C = (float *)aligned_alloc(64, sizeof(float) * 64 * (size_t)N);
  for (long i = 0; i < 64L * K; ++i) A[i] = (float)(i % 7) * 0.1f;
  printf("few rows x weight rows from DRAM (%d weights of %dx%d, %.0f MB), best of %d\n", nmat, N, K, nmat * (double)N * K * 4 / 1e6, reps);
  for (int T = 1; T <= 2; ++T)
    for (int mi = 0; mi < 8; ++mi) {
      const int M = Ms[mi];
      double best = 1e30;
      for (int r = 0; r < reps; ++r) {
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, (unsigned)T);
        pthread_t th[2];
        skinny_dram_arg a[2];
        double t = now();
        for (int i = 0; i < T; ++i) {
          a[i] = (skinny_dram_arg){A, W, C, nmat, N, K, M, i, T, &bar};
          pthread_create(&th[i], NULL, skinny_dram_thread, &a[i]);
        }
        for (int i = 0; i < T; ++i) pthread_join(th[i], NULL);
        t = now() - t;
        if (t < best) best = t;
        pthread_barrier_destroy(&bar);
      }
      const double bytes = (double)nmat * N * K * 4, flops = 2.0 * M * N * K * nmat;
      printf("threads=%d M=%2d: %6.1f GFLOP/s %5.1f GB/s %6.2f ms per 225 MB\n", T, M, flops / best / 1e9, bytes / best / 1e9,
             best * 1e3 * 225e6 / bytes);
    }
  for (int i = 0; i < nmat; ++i) free(W[i]);
  free(W), free(A), free(C);
  return 0;
}

int main(int argc, char **argv) {
  if (env_int("TESSERA_BENCH_SKINNY", 0) == 2) return bench_skinny_dram();
  if (env_int("TESSERA_BENCH_SKINNY", 0)) return bench_skinny();
  int sizes[16] = {256, 512, 1024, 2048}, ns = 4;
  if (argc > 1) {
    ns = 0;
    for (int i = 1; i < argc && ns < 16; ++i) sizes[ns++] = atoi(argv[i]);
  }
  int reps = env_int("TESSERA_REPS", 5);
  print_load("before");
  printf("isa=%s MR=%d NR=%d  mc=%d kc=%d nc=%d (0 = default %d/%d/%d)\n", TESSERA_GEMM_ISA, TESSERA_MR,
         TESSERA_NR, env_int("TESSERA_MC", 0), env_int("TESSERA_KC", 0), env_int("TESSERA_NC", 0),
         TESSERA_MC_DEFAULT, TESSERA_KC_DEFAULT, TESSERA_NC_DEFAULT);
  double peak1 = fma_peak(1), peak2 = fma_peak(2);
  pool_start(2);
  double g1[16], g2[16];
  /* Several rounds (TESSERA_ROUNDS, default 2), best of all: more chances if the machine was busy
     (results are sensitive to other processes; the peak is re-measured at the end too and the higher
     value is used). */
  for (int i = 0; i < ns; ++i) g1[i] = g2[i] = 0;
  int rounds = env_int("TESSERA_ROUNDS", 2);
  for (int round = 0; round < rounds; ++round)
    for (int i = 0; i < ns; ++i) {
      double a = bench(sizes[i], 1, reps), b = bench(sizes[i], 2, reps);
      if (a > g1[i]) g1[i] = a;
      if (b > g2[i]) g2[i] = b;
    }
  pool_stop();
  double p1 = fma_peak(1), p2 = fma_peak(2);
  if (p1 > peak1) peak1 = p1;
  if (p2 > peak2) peak2 = p2;
  printf("FMA peak: 1 thread %.1f GFLOP/s, 2 threads %.1f GFLOP/s\n", peak1, peak2);
  printf("%6s | %10s %7s | %10s %7s | %7s\n", "M=N=K", "1T GFLOP/s", "% peak", "2T GFLOP/s", "% peak",
         "scaling");
  for (int i = 0; i < ns; ++i)
    printf("%6d | %10.1f %6.1f%% | %10.1f %6.1f%% | %6.2fx\n", sizes[i], g1[i], 100 * g1[i] / peak1, g2[i],
           100 * g2[i] / peak2, g2[i] / g1[i]);
  print_load("after");
  return 0;
}
