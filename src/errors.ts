/**
 * Typed errors. Every message says what was expected and what was found, so a user can fix the call
 * without reading Tessera's source.
 */
export class TesseraError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}
/** Shapes that cannot broadcast, reshape sizes that differ, matmul inner dimensions that disagree. */
export class ShapeError extends TesseraError {}
/** An operation that does not accept the tensor's dtype, or an unknown dtype name. */
export class DTypeError extends TesseraError {}
/** A dimension index outside the tensor's rank, or an index outside an axis. */
export class DimError extends TesseraError {}
/** Reading or computing with a tensor whose buffer was freed by `dispose()`. */
export class DisposedError extends TesseraError {}
/** Misuse of autodiff: `backward()` on a non-scalar without a gradient, a graph without gradients. */
export class GradError extends TesseraError {}
/** A device that is unknown, unavailable, or failed while running a kernel. */
export class DeviceError extends TesseraError {}
/** A file that is not in the format it claims (corrupt, truncated, unknown dtype, wrong offsets). */
export class FormatError extends TesseraError {}
/** A user-supplied argument of the right type but an invalid value (negative sizes, bad options). */
export class ValueError extends TesseraError {}
