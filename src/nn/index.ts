/**
 * `nn`: modules, layers, the GPT model and stateless functions (`F`).
 * @packageDocumentation
 */
import '../runtime/node_devices.js';
export * from './api.js';
