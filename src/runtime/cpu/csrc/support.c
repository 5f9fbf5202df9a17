/*
 * Tessera CPU runtime support: aligned memory, a persistent thread pool, loading of compiled kernel
 * libraries, and the program runner that executes a whole schedule in one call from JavaScript.
 *
 * Kernel libraries do not link against this one (it would be loaded twice: once by koffi, once by the
 * dynamic linker, with two thread pools). Instead `tessera_load` hands each library a table of function
 * pointers (struct tessera_api) through its `tessera_init` entry point.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tessera_api.h"

#define TESSERA_GEMM_IMPLEMENTATION
#include "gemm.h"

/* ---------------------------------------------------------------- memory */

void *tessera_alloc(uint64_t bytes) {
  size_t n = (size_t)((bytes + 63) / 64 * 64);
  if (n == 0) n = 64;
  /* Not zeroed: every buffer is written (upload or kernel) before it is read. */
  return aligned_alloc(64, n);
}

void tessera_free(void *p) { free(p); }

/* ---------------------------------------------------------------- thread pool */

/*
 * Persistent workers claim tasks of the current job from an atomic counter, and so does the calling
 * thread. A worker that wakes late (on 2 cores it often waits for the JavaScript thread's core) finds
 * the tasks already taken and costs nothing: the caller never waits for a worker that has not started.
 *
 * Jobs live in a ring of two slots so a late worker can never read a slot while it is rewritten:
 * the caller invalidates a slot, waits until no worker holds it, then fills it (a Dekker-style
 * handshake on `holders` and `gen`, all sequentially consistent).
 */
#define MAX_THREADS 256

typedef void (*task_fn)(void *ctx, int index, int count);

typedef struct {
  atomic_uint_fast64_t gen; /* job generation this slot holds; 0 while being written */
  atomic_int holders;       /* workers currently inside this slot */
  task_fn fn;
  void *ctx;
  int ntasks;
  atomic_int next; /* next task to claim */
  atomic_int done; /* tasks finished */
} job_slot;

static struct {
  int nthreads; /* workers + the calling thread */
  pthread_t threads[MAX_THREADS];
  pthread_mutex_t mu;
  pthread_cond_t wake;
  atomic_uint_fast64_t gen; /* latest published job */
  atomic_int sleepers;
  atomic_int shutdown;
  job_slot slots[2];
} pool = {.nthreads = 1, .mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static _Thread_local int in_parallel = 0;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Claim and run tasks of a slot until none are left. */
static void drain(job_slot *s) {
  int n = s->ntasks;
  for (;;) {
    int i = atomic_fetch_add(&s->next, 1);
    if (i >= n) return;
    s->fn(s->ctx, i, n);
    atomic_fetch_add(&s->done, 1);
  }
}

static void *worker_main(void *arg) {
  (void)arg;
  uint64_t seen = atomic_load(&pool.gen);
  for (;;) {
    uint64_t g;
    int spins = 0;
    while ((g = atomic_load(&pool.gen)) == seen && !atomic_load(&pool.shutdown)) {
      if (++spins < 4000) {
        cpu_relax();
        continue;
      }
      pthread_mutex_lock(&pool.mu);
      atomic_fetch_add(&pool.sleepers, 1);
      while (atomic_load(&pool.gen) == seen && !atomic_load(&pool.shutdown)) pthread_cond_wait(&pool.wake, &pool.mu);
      atomic_fetch_sub(&pool.sleepers, 1);
      pthread_mutex_unlock(&pool.mu);
      spins = 0;
    }
    if (atomic_load(&pool.shutdown)) return NULL;
    seen = g;
    job_slot *s = &pool.slots[g & 1];
    atomic_fetch_add(&s->holders, 1);
    if (atomic_load(&s->gen) == g) {
      in_parallel = 1;
      drain(s);
      in_parallel = 0;
    }
    atomic_fetch_sub(&s->holders, 1);
  }
}

static void stop_workers(void) {
  if (pool.nthreads <= 1) return;
  pthread_mutex_lock(&pool.mu);
  atomic_store(&pool.shutdown, 1);
  pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.mu);
  for (int i = 1; i < pool.nthreads; i++) pthread_join(pool.threads[i], NULL);
  atomic_store(&pool.shutdown, 0);
  pool.nthreads = 1;
}

/* Set the number of threads kernels use (including the caller). Workers are created once here. */
int tessera_set_threads(int n) {
  if (n < 1) n = 1;
  if (n > MAX_THREADS) n = MAX_THREADS;
  if (n == pool.nthreads) return n;
  stop_workers();
  pool.nthreads = n;
  for (int i = 1; i < n; i++) {
    if (pthread_create(&pool.threads[i], NULL, worker_main, NULL) != 0) {
      pool.nthreads = i;
      break;
    }
  }
  return pool.nthreads;
}

int tessera_get_threads(void) { return pool.nthreads; }

/* Run fn(ctx, i, ntasks) for every i in [0, ntasks) on the pool and the caller; returns when all are
   done. Nested calls run serially on the calling thread. */
static void run_tasks(task_fn fn, void *ctx, int ntasks) {
  if (ntasks <= 0) return;
  if (pool.nthreads <= 1 || in_parallel || ntasks == 1) {
    for (int i = 0; i < ntasks; i++) fn(ctx, i, ntasks);
    return;
  }
  uint64_t g = atomic_load(&pool.gen) + 1;
  job_slot *s = &pool.slots[g & 1];
  atomic_store(&s->gen, 0);
  while (atomic_load(&s->holders) > 0) cpu_relax(); /* a late worker may still hold this slot */
  s->fn = fn;
  s->ctx = ctx;
  s->ntasks = ntasks;
  atomic_store(&s->next, 0);
  atomic_store(&s->done, 0);
  atomic_store(&s->gen, g);
  atomic_store(&pool.gen, g);
  if (atomic_load(&pool.sleepers) > 0) {
    pthread_mutex_lock(&pool.mu);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.mu);
  }
  in_parallel = 1;
  drain(s);
  in_parallel = 0;
  while (atomic_load(&s->done) < ntasks) cpu_relax();
}

typedef struct {
  void (*fn)(void *ctx, int64_t lo, int64_t hi);
  void *ctx;
  int64_t n;
} range_job;

static void range_task(void *c, int index, int count) {
  range_job *j = (range_job *)c;
  int64_t lo = j->n * index / count;
  int64_t hi = j->n * (index + 1) / count;
  if (lo < hi) j->fn(j->ctx, lo, hi);
}

/* Split [0, n) into a few contiguous ranges per thread, claimed dynamically. */
static void parallel_for(int64_t n, void (*fn)(void *ctx, int64_t lo, int64_t hi), void *ctx) {
  if (n <= 0) return;
  if (pool.nthreads <= 1 || in_parallel || n == 1) {
    fn(ctx, 0, n);
    return;
  }
  int64_t tasks = (int64_t)pool.nthreads * 4;
  if (tasks > n) tasks = n;
  range_job j = {fn, ctx, n};
  run_tasks(range_task, &j, (int)tasks);
}

typedef struct {
  const tessera_gemm *g;
} gemm_job;

static void gemm_task(void *c, int index, int count) { tessera_gemm_run(((gemm_job *)c)->g, index, count); }

/* One GEMM on all threads (one share per thread, claimed dynamically). */
static void gemm_parallel(const tessera_gemm *g) {
  if (pool.nthreads <= 1 || in_parallel) {
    tessera_gemm_run(g, 0, 1);
    return;
  }
  gemm_job j = {g};
  run_tasks(gemm_task, &j, pool.nthreads);
}

static void gemm_serial(const tessera_gemm *g) { tessera_gemm_run(g, 0, 1); }

/* The GEMM build this library (and every kernel library compiled with the same flags) uses. */
const char *tessera_gemm_features(void) {
#if defined(TESSERA_GEMM_BF16)
  return TESSERA_GEMM_ISA " bf16-dot";
#else
  return TESSERA_GEMM_ISA;
#endif
}

static const struct tessera_api api = {
    .abi = TESSERA_API_ABI,
    .parallel_for = parallel_for,
    .gemm_parallel = gemm_parallel,
    .gemm_serial = gemm_serial,
    .threads = tessera_get_threads,
};

/* ---------------------------------------------------------------- kernel libraries */

static char last_error[1024];

const char *tessera_last_error(void) { return last_error; }

/* dlopen a compiled kernel library and give it the API table. Returns NULL (see tessera_last_error). */
void *tessera_load(const char *path) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(last_error, sizeof last_error, "%s", dlerror());
    return NULL;
  }
  int (*init)(const struct tessera_api *) = (int (*)(const struct tessera_api *))dlsym(h, "tessera_init");
  if (!init) {
    snprintf(last_error, sizeof last_error, "%s: no tessera_init entry point", path);
    dlclose(h);
    return NULL;
  }
  if (init(&api) != 0) {
    snprintf(last_error, sizeof last_error, "%s: built for another runtime ABI", path);
    dlclose(h);
    return NULL;
  }
  return h;
}

/* Address of a kernel in a loaded library, 0 if absent. */
uint64_t tessera_sym(void *handle, const char *name) { return (uint64_t)(uintptr_t)dlsym(handle, name); }

/* ---------------------------------------------------------------- programs */

typedef void (*kernel_fn)(void *const *args, const uint32_t *scalars);

/*
 * Execute a program: a sequence of launches, each encoded as
 *   [kernel address, nargs, arg address x nargs, nscalars, scalar x nscalars]
 * in 64-bit words. One call runs a whole schedule (or a captured JIT step) with no JavaScript between
 * kernels. Returns the number of launches, or -1 for a malformed program.
 */
int64_t tessera_run(const uint64_t *prog, int64_t len) {
  void *args[64];
  uint32_t scalars[64];
  int64_t i = 0, launches = 0;
  while (i < len) {
    kernel_fn fn = (kernel_fn)(uintptr_t)prog[i++];
    if (i >= len) return -1;
    int64_t nargs = (int64_t)prog[i++];
    if (nargs < 0 || nargs > 64 || i + nargs >= len) return -1;
    for (int64_t a = 0; a < nargs; a++) args[a] = (void *)(uintptr_t)prog[i++];
    int64_t ns = (int64_t)prog[i++];
    if (ns < 0 || ns > 64 || i + ns > len) return -1;
    for (int64_t s = 0; s < ns; s++) scalars[s] = (uint32_t)prog[i++];
    fn(args, scalars);
    launches++;
  }
  return launches;
}

/* ---------------------------------------------------------------- copies inside programs */

/* args = [dst, src], scalars = [bytes low 32 bits, bytes high 32 bits] */
static void copy_kernel(void *const *args, const uint32_t *s) {
  uint64_t bytes = (uint64_t)s[0] | ((uint64_t)s[1] << 32);
  memcpy(args[0], args[1], (size_t)bytes);
}

/* Address of the copy kernel, so a program can order copies between kernel launches. */
uint64_t tessera_copy_kernel(void) { return (uint64_t)(uintptr_t)copy_kernel; }
