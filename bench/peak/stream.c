/*
 * stream.c: DRAM bandwidth, STREAM-like (McCalpin's kernels on double arrays far larger than L3).
 *
 *   copy:  c[i] = a[i]             counted bytes: 16 per element (read a, write c)
 *   triad: a[i] = b[i] + s * c[i]  counted bytes: 24 per element (read b, c, write a)
 *
 * As in STREAM, write-allocate traffic is not counted (the hardware may move 1/3 more bytes for copy,
 * 1/4 more for triad). Each thread owns a contiguous slice of each array and touches it first (page
 * placement). Best (and median) of `reps` timed repetitions after one warm-up; time spans a common start barrier
 * to the last thread's end.
 *
 * Build: cc -O3 -march=native -pthread stream.c -o stream
 * Usage: stream <threads> [elements_per_array=67108864] [reps=10]   (prints one JSON object)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double *a, *b, *c;
static long n;
static int threads;
static pthread_barrier_t start_barrier, end_barrier;
static volatile int kernel; /* 0 init, 1 copy, 2 triad, -1 exit */
static double t_end[256];

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

static void *worker(void *arg) {
  int t = (int)(long)arg;
  long lo = n * t / threads, hi = n * (t + 1) / threads;
  for (;;) {
    pthread_barrier_wait(&start_barrier);
    int k = kernel;
    if (k < 0) break;
    double *restrict pa = a, *restrict pb = b, *restrict pc = c;
    const double s = 3.0;
    if (k == 0)
      for (long i = lo; i < hi; i++) pa[i] = 1.0, pb[i] = 2.0, pc[i] = 0.0;
    else if (k == 1)
      for (long i = lo; i < hi; i++) pc[i] = pa[i];
    else
      for (long i = lo; i < hi; i++) pa[i] = pb[i] + s * pc[i];
    t_end[t] = now();
    pthread_barrier_wait(&end_barrier);
  }
  return NULL;
}

static double run(int k) {
  kernel = k;
  double t0 = now();
  pthread_barrier_wait(&start_barrier);
  pthread_barrier_wait(&end_barrier);
  double end = t0;
  for (int t = 0; t < threads; t++)
    if (t_end[t] > end) end = t_end[t];
  return end - t0;
}

int main(int argc, char **argv) {
  threads = argc > 1 ? atoi(argv[1]) : 1;
  n = argc > 2 ? atol(argv[2]) : 67108864L; /* 512 MiB per array */
  int reps = argc > 3 ? atoi(argv[3]) : 10;
  if (threads < 1 || threads > 256 || n < 1024) return 1;
  if (posix_memalign((void **)&a, 64, n * sizeof(double)) || posix_memalign((void **)&b, 64, n * sizeof(double)) ||
      posix_memalign((void **)&c, 64, n * sizeof(double))) {
    fprintf(stderr, "stream: out of memory\n");
    return 1;
  }
  pthread_barrier_init(&start_barrier, NULL, threads + 1);
  pthread_barrier_init(&end_barrier, NULL, threads + 1);
  pthread_t th[256];
  for (int t = 0; t < threads; t++) pthread_create(&th[t], NULL, worker, (void *)(long)t);
  run(0); /* first touch by the owning thread */
  run(1);
  run(2); /* warm-up */
  double tcs[64], tts[64];
  if (reps > 64) reps = 64;
  for (int r = 0; r < reps; r++) {
    tcs[r] = run(1);
    tts[r] = run(2);
  }
  qsort(tcs, reps, sizeof(double), cmp_double);
  qsort(tts, reps, sizeof(double), cmp_double);
  double best_copy = tcs[0], best_triad = tts[0];
  kernel = -1;
  pthread_barrier_wait(&start_barrier);
  for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
  double check = a[n / 2] + c[n / 3];
  printf("{\"threads\":%d,\"elements\":%ld,\"array_mib\":%.0f,\"copy_gbs\":%.2f,\"triad_gbs\":%.2f,"
         "\"copy_median_gbs\":%.2f,\"triad_median_gbs\":%.2f,\"check\":%g}\n",
         threads, n, n * 8.0 / 1048576.0, 16.0 * n / best_copy * 1e-9, 24.0 * n / best_triad * 1e-9,
         16.0 * n / tcs[reps / 2] * 1e-9, 24.0 * n / tts[reps / 2] * 1e-9, check);
  return 0;
}
