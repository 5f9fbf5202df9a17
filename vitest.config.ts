import { defineConfig } from 'vitest/config';

// Three projects: everything on the reference interpreter, and the operator suite again on the native
// CPU backend and on WebGPU (TESSERA_DEVICE makes it the default device), so all agree with the same
// references.
// WebGPU without a GPU: Dawn finds Chromium's SwiftShader (software Vulkan) through this ICD file.
const SWIFTSHADER_ENV = {
  VK_ICD_FILENAMES: process.env.VK_ICD_FILENAMES ?? '/usr/lib/chromium/vk_swiftshader_icd.json',
  XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp',
};

export default defineConfig({
  test: {
    testTimeout: 180_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two test files at a time even on a 2-core machine (the default leaves one core idle): most files
    // spend their time in the C compiler or in single-threaded JavaScript.
    maxWorkers: 2,
    projects: [
      { extends: true, test: { name: 'interp', include: ['test/**/*.test.ts'], exclude: ['test/runtime/webgpu*.test.ts', '**/node_modules/**'] } },
      {
        extends: true,
        test: { name: 'cpu', include: ['test/tensor/**/*.test.ts', 'test/nn/**/*.test.ts', 'test/optim/**/*.test.ts'], env: { TESSERA_DEVICE: 'cpu' } },
      },
      {
        extends: true,
        test: {
          name: 'webgpu',
          include: ['test/tensor/**/*.test.ts', 'test/nn/**/*.test.ts', 'test/optim/**/*.test.ts', 'test/runtime/webgpu*.test.ts'],
          env: { TESSERA_DEVICE: 'webgpu', ...SWIFTSHADER_ENV },
        },
      },
    ],
  },
});
