/*
 * The table of runtime functions a compiled kernel library receives in `tessera_init`. Bump
 * TESSERA_API_ABI whenever this struct changes: libraries built for another ABI refuse to load.
 */
#ifndef TESSERA_API_H
#define TESSERA_API_H
#include <stdint.h>

struct tessera_gemm;

#define TESSERA_API_ABI 1

struct tessera_api {
  int abi;
  /* Split [0, n) into one contiguous range per thread and run fn on each; returns when all are done. */
  void (*parallel_for)(int64_t n, void (*fn)(void *ctx, int64_t lo, int64_t hi), void *ctx);
  /* One GEMM using every thread of the pool. */
  void (*gemm_parallel)(const struct tessera_gemm *g);
  /* One GEMM on the calling thread (for batches already split across threads). */
  void (*gemm_serial)(const struct tessera_gemm *g);
  int (*threads)(void);
};
#endif
