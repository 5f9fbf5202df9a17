/*
 * fma_peak.c: f32 fused-multiply-add peak of this CPU, in GFLOP/s (1 FMA = 2 FLOP).
 *
 * Each thread runs NACC independent accumulator chains acc = acc * x + y of vector FMAs, enough to
 * cover FMA latency x FMA ports on current x86 cores (Zen 4: 4 cycles x 2 pipes = 8; Skylake-X: 4 x 2).
 * The widths measured are 512-bit (AVX-512F) and 256-bit (AVX2+FMA) when the compiler targets them;
 * the larger figure is the peak. Threads are pthreads; time runs from a common start barrier to the
 * last thread's end. Best (the peak) and median of `reps` repetitions.
 *
 * Build: cc -O3 -march=native -pthread fma_peak.c -o fma_peak
 * Usage: fma_peak <threads> [seconds_per_rep=0.5] [reps=5]   (prints one JSON object)
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NACC 16

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
  int width; /* 512 or 256 */
  long iters;
  float sink;
  pthread_barrier_t *barrier;
  double t_end;
} job_t;

#if defined(__AVX512F__)
static float run512(long iters) {
  __m512 acc[NACC];
  const __m512 x = _mm512_set1_ps(0.9999999f), y = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < NACC; i++) acc[i] = _mm512_set1_ps((float)i);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
    for (int i = 0; i < NACC; i++) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
  }
  __m512 s = acc[0];
  for (int i = 1; i < NACC; i++) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}
#endif

#if defined(__AVX2__) && defined(__FMA__)
static float run256(long iters) {
  __m256 acc[NACC];
  const __m256 x = _mm256_set1_ps(0.9999999f), y = _mm256_set1_ps(1e-7f);
  for (int i = 0; i < NACC; i++) acc[i] = _mm256_set1_ps((float)i);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
    for (int i = 0; i < NACC; i++) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
  }
  __m256 s = acc[0];
  for (int i = 1; i < NACC; i++) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}
#endif

static float run_width(int width, long iters) {
#if defined(__AVX512F__)
  if (width == 512) return run512(iters);
#endif
#if defined(__AVX2__) && defined(__FMA__)
  if (width == 256) return run256(iters);
#endif
  (void)iters;
  fprintf(stderr, "width %d not compiled in\n", width);
  exit(2);
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

static void *worker(void *arg) {
  job_t *j = arg;
  pthread_barrier_wait(j->barrier);
  j->sink = run_width(j->width, j->iters);
  j->t_end = now();
  return NULL;
}

/* Seconds for `threads` threads each doing `iters` iterations. */
static double timed(int width, int threads, long iters, float *sink) {
  pthread_t th[256];
  job_t jobs[256];
  pthread_barrier_t barrier;
  pthread_barrier_init(&barrier, NULL, threads + 1);
  for (int t = 0; t < threads; t++) {
    jobs[t] = (job_t){.width = width, .iters = iters, .barrier = &barrier};
    pthread_create(&th[t], NULL, worker, &jobs[t]);
  }
  double t0 = now();
  pthread_barrier_wait(&barrier);
  double end = t0;
  for (int t = 0; t < threads; t++) {
    pthread_join(th[t], NULL);
    if (jobs[t].t_end > end) end = jobs[t].t_end;
    *sink += jobs[t].sink;
  }
  pthread_barrier_destroy(&barrier);
  return end - t0;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  double seconds = argc > 2 ? atof(argv[2]) : 0.5;
  int reps = argc > 3 ? atoi(argv[3]) : 5;
  if (threads < 1 || threads > 256) return 1;
  int widths[2];
  int nw = 0;
#if defined(__AVX512F__)
  widths[nw++] = 512;
#endif
#if defined(__AVX2__) && defined(__FMA__)
  widths[nw++] = 256;
#endif
  if (nw == 0) {
    fprintf(stderr, "fma_peak: compile with -march=native on an AVX2+FMA or AVX-512 CPU\n");
    return 2;
  }
  float sink = 0;
  printf("{\"threads\":%d,\"accumulators\":%d,\"widths\":[", threads, NACC);
  double best_all = 0;
  for (int w = 0; w < nw; w++) {
    int lanes = widths[w] / 32;
    /* calibrate: iterations for ~`seconds` on one thread */
    long iters = 1 << 20;
    double dt = timed(widths[w], 1, iters, &sink);
    while (dt < 0.05) {
      iters *= 2;
      dt = timed(widths[w], 1, iters, &sink);
    }
    iters = (long)(iters * seconds / dt);
    double best = 0, g[64];
    if (reps > 64) reps = 64;
    for (int r = 0; r < reps; r++) {
      double s = timed(widths[w], threads, iters, &sink);
      double flops = 2.0 * lanes * NACC * (double)iters * threads;
      g[r] = flops / s * 1e-9;
      if (g[r] > best) best = g[r];
    }
    qsort(g, reps, sizeof(double), cmp_double);
    if (best > best_all) best_all = best;
    printf("%s{\"bits\":%d,\"gflops\":%.2f,\"median\":%.2f}", w ? "," : "", widths[w], best, g[reps / 2]);
  }
  printf("],\"gflops\":%.2f,\"sink\":%g}\n", best_all, (double)sink);
  return 0;
}
