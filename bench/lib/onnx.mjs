/**
 * A minimal ONNX model writer: just enough protobuf (varints, length-delimited fields) to emit a
 * ModelProto with one graph of plain nodes over f32 tensors. Field numbers follow onnx/onnx.proto:
 *
 *   ModelProto        ir_version=1 (int64), producer_name=2, graph=7, opset_import=8
 *   OperatorSetIdProto domain=1, version=2
 *   GraphProto        node=1, name=2, input=11, output=12
 *   NodeProto         input=1, output=2, name=3, op_type=4
 *   ValueInfoProto    name=1, type=2
 *   TypeProto         tensor_type=1  ->  TypeProto.Tensor elem_type=1 (int32), shape=2
 *   TensorShapeProto  dim=1  ->  Dimension dim_value=1 (int64)
 */

const FLOAT = 1; // TensorProto.DataType.FLOAT

function varint(value) {
  const out = [];
  let v = BigInt(value);
  if (v < 0n) v += 1n << 64n; // two's complement, as protobuf encodes negative int64
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) byte |= 0x80;
    out.push(byte);
  } while (v !== 0n);
  return out;
}

const tag = (field, wire) => varint((field << 3) | wire);
const concat = (parts) => parts.flat();
const fieldVarint = (field, v) => [...tag(field, 0), ...varint(v)];
function fieldBytes(field, bytes) {
  return [...tag(field, 2), ...varint(bytes.length), ...bytes];
}
const fieldString = (field, s) => fieldBytes(field, [...new TextEncoder().encode(s)]);

/** ValueInfoProto of an f32 tensor with a static shape. */
function valueInfo(name, shape) {
  const dims = shape.map((d) => fieldBytes(1, fieldVarint(1, d)));
  const tensorType = concat([fieldVarint(1, FLOAT), fieldBytes(2, concat(dims))]);
  const type = fieldBytes(1, tensorType);
  return concat([fieldString(1, name), fieldBytes(2, type)]);
}

function node({ op, inputs, outputs, name }) {
  return concat([
    ...inputs.map((i) => fieldString(1, i)),
    ...outputs.map((o) => fieldString(2, o)),
    fieldString(3, name ?? op),
    fieldString(4, op),
  ]);
}

/**
 * Serialize a model. `graph = { name, nodes: [{op, inputs, outputs}], inputs: [{name, shape}], outputs: [{name, shape}] }`.
 * Returns the ModelProto bytes.
 */
export function encodeModel(graph, { irVersion = 8, opset = 17, producer = 'tessera-bench' } = {}) {
  const g = concat([
    ...graph.nodes.map((n) => fieldBytes(1, node(n))),
    fieldString(2, graph.name ?? 'graph'),
    ...graph.inputs.map((v) => fieldBytes(11, valueInfo(v.name, v.shape))),
    ...graph.outputs.map((v) => fieldBytes(12, valueInfo(v.name, v.shape))),
  ]);
  const model = concat([
    fieldVarint(1, irVersion),
    fieldString(2, producer),
    fieldBytes(7, g),
    fieldBytes(8, concat([fieldString(1, ''), fieldVarint(2, opset)])),
  ]);
  return Uint8Array.from(model);
}

/** C[m,n] = A[m,k] @ B[k,n], f32. */
export function matmulModel(m, k, n) {
  return encodeModel({
    name: `matmul_${m}x${k}x${n}`,
    nodes: [{ op: 'MatMul', inputs: ['A', 'B'], outputs: ['C'] }],
    inputs: [
      { name: 'A', shape: [m, k] },
      { name: 'B', shape: [k, n] },
    ],
    outputs: [{ name: 'C', shape: [m, n] }],
  });
}
