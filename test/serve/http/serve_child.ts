/**
 * Entry of the server child process of server.test.ts (bundled with esbuild, since a child process
 * cannot run the TypeScript sources): start the server with the options in argv[2] (JSON) and print
 * `{"url": ...}` on a line of stdout once it listens.
 */
import { startServer, type StartServerOptions } from '../../../src/serve/server.js';

const opts = JSON.parse(process.argv[2]!) as StartServerOptions;
const server = await startServer({ ...opts, logger: false });
process.stdout.write(JSON.stringify({ url: server.url }) + '\n');
