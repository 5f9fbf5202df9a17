import { defineConfig } from 'vitest/config';

// Two projects: everything on the reference interpreter, and the operator suite again on the native
// CPU backend (TESSERA_DEVICE=cpu makes it the default device), so both agree with the same references.
export default defineConfig({
  test: {
    testTimeout: 180_000,
    hookTimeout: 120_000,
    pool: 'forks',
    projects: [
      { extends: true, test: { name: 'interp', include: ['test/**/*.test.ts'] } },
      {
        extends: true,
        test: { name: 'cpu', include: ['test/tensor/**/*.test.ts', 'test/nn/**/*.test.ts', 'test/optim/**/*.test.ts'], env: { TESSERA_DEVICE: 'cpu' } },
      },
    ],
  },
});
