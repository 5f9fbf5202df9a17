/**
 * Pre-tokenizers of byte-level BPE: the regular expressions that cut text into words before merges run
 * inside each word. The presets are llama.cpp's, keyed by its `tokenizer.ggml.pre` names, so a GGUF file
 * tokenizes here as it does there.
 */
import { FormatError } from '../errors.js';

/**
 * Unicode White_Space, which llama.cpp and Hugging Face mean by `\s`. JavaScript's own `\s` differs
 * (it adds U+FEFF and lacks U+0085), so patterns are rewritten to use this class instead.
 */
const WS = '\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

/** GPT-2's pattern (OpenAI's encoder.py); `\s+` at the end catches a lone whitespace before a word. */
export const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const LLAMA3_PATTERN =
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_PATTERN =
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** A preset: the patterns applied in turn (each splits the pieces of the previous), plus llama.cpp's flags. */
interface Preset {
  patterns: readonly string[];
  /** A word that is itself a token skips the merges (llama.cpp's `ignore_merges`). */
  ignoreMerges?: boolean;
  /** llama.cpp adds BOS by default for this family. */
  addBos?: boolean;
}

const GPT2: Preset = { patterns: [GPT2_PATTERN] };
const LLAMA3: Preset = { patterns: [LLAMA3_PATTERN], ignoreMerges: true, addBos: true };
const PRESETS: Record<string, Preset> = {
  // llama.cpp's fallback when `tokenizer.ggml.pre` is absent or 'default'.
  default: { patterns: ['[\\p{P}\\$\\+<=>\\^~\\|]+', GPT2_PATTERN, '\\p{N}+', '[0-9][0-9][0-9]'] },
  'gpt-2': GPT2,
  'phi-2': GPT2,
  mpt: GPT2,
  olmo: GPT2,
  jais: GPT2,
  trillion: GPT2,
  'roberta-bpe': GPT2,
  llama3: LLAMA3,
  'llama-v3': LLAMA3,
  'llama-bpe': LLAMA3,
  falcon3: LLAMA3,
  pixtral: LLAMA3,
  dbrx: { patterns: [LLAMA3_PATTERN] },
  'smaug-bpe': { patterns: [LLAMA3_PATTERN] },
  qwen2: { patterns: [QWEN2_PATTERN] },
  'deepseek-r1-qwen': { patterns: [QWEN2_PATTERN] },
  stablelm2: { patterns: [QWEN2_PATTERN] },
  falcon: { patterns: ['[\\p{P}\\$\\+<=>\\^~\\|`]+', GPT2_PATTERN, '[0-9][0-9][0-9]'] },
  starcoder: { patterns: ['\\p{N}', GPT2_PATTERN] },
  refact: { patterns: ['\\p{N}', GPT2_PATTERN] },
  'command-r': { patterns: ['\\p{N}', GPT2_PATTERN] },
  smollm: { patterns: ['\\p{N}', GPT2_PATTERN] },
};

/** The `tokenizer.ggml.pre` names this module implements. */
export const PRE_TOKENIZER_NAMES: readonly string[] = Object.keys(PRESETS);

/**
 * Rewrite a pattern in the Oniguruma/PCRE dialect of tokenizer.json and llama.cpp into a JavaScript
 * `u`-flag RegExp: `\s`/`\S` become the White_Space class, and the case-insensitive contraction group
 * `(?i:...)` that Node 20 cannot parse is spelled out.
 */
export function compilePattern(pattern: string, where: string): RegExp {
  let src = pattern.replace("(?i:'s|'t|'re|'ve|'m|'ll|'d)", "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])");
  let out = '';
  let inClass = false;
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === '\\') {
      const n = src[i + 1];
      if (n === 's') out += inClass ? WS : `[${WS}]`;
      else if (n === 'S') {
        if (inClass) throw new FormatError(`${where}: \\S inside a character class is not supported in pattern ${JSON.stringify(pattern)}`);
        out += `[^${WS}]`;
      } else out += c + (n ?? '');
      i++;
      continue;
    }
    if (c === '[' && !inClass) inClass = true;
    else if (c === ']' && inClass) inClass = false;
    out += c;
  }
  src = out;
  try {
    return new RegExp(src, 'gu');
  } catch (err) {
    throw new FormatError(`${where}: pattern ${JSON.stringify(pattern)} is not supported here: ${(err as Error).message}`);
  }
}

/** Cuts text into the words BPE merges within. */
export class PreTokenizer {
  private readonly regexes: RegExp[];

  /**
   * @param name - the llama.cpp preset name, or a description for custom patterns (tokenizer.json).
   * @param patterns - applied in turn; each keeps both its matches and the text between them as pieces.
   */
  constructor(
    readonly name: string,
    readonly patterns: readonly string[],
    readonly ignoreMerges = false,
    readonly defaultAddBos = false,
    where = 'pre-tokenizer',
  ) {
    this.regexes = patterns.map((p) => compilePattern(p, where));
  }

  /** A llama.cpp preset by its `tokenizer.ggml.pre` name ('default' when absent, as llama.cpp does). */
  static preset(name: string | undefined, where = 'tokenizer.ggml.pre'): PreTokenizer {
    const key = name ?? 'default';
    const p = Object.prototype.hasOwnProperty.call(PRESETS, key) ? PRESETS[key] : undefined;
    if (p === undefined) {
      throw new FormatError(`${where}: unsupported pre-tokenizer '${key}' (supported: ${PRE_TOKENIZER_NAMES.join(', ')})`);
    }
    return new PreTokenizer(key, p.patterns, p.ignoreMerges ?? false, p.addBos ?? false, where);
  }

  /**
   * The preset name whose patterns equal `patterns`, if any (so a tokenizer.json with GPT-2's regex
   * exports to GGUF as 'gpt-2'). With `ignoreMerges`, a preset with that flag is preferred (Llama 3's
   * pattern is 'llama3' with it, 'dbrx' without).
   */
  static presetNameFor(patterns: readonly string[], ignoreMerges?: boolean): string | undefined {
    const norm = (p: string): string =>
      p.replace("(?i:'s|'t|'re|'ve|'m|'ll|'d)", "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])");
    const same = Object.entries(PRESETS).filter(
      ([, p]) => p.patterns.length === patterns.length && p.patterns.every((q, i) => q === norm(patterns[i]!)),
    );
    return (same.find(([, p]) => (p.ignoreMerges ?? false) === ignoreMerges) ?? same[0])?.[0];
  }

  /** The words of `text`, in order; their concatenation is `text`. */
  split(text: string): string[] {
    let pieces = [text];
    for (const re of this.regexes) {
      const next: string[] = [];
      for (const piece of pieces) splitOne(piece, re, next);
      pieces = next;
    }
    return pieces;
  }
}

/** Matches of `re` in `s` and the gaps between them, in order, empty ones dropped. */
function splitOne(s: string, re: RegExp, out: string[]): void {
  let last = 0;
  re.lastIndex = 0;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    const text = m[0];
    if (text.length === 0) {
      // A zero-length match would loop forever; step over one code point.
      re.lastIndex += (s.codePointAt(re.lastIndex) ?? 0) > 0xffff ? 2 : 1;
      continue;
    }
    if (m.index > last) out.push(s.slice(last, m.index));
    out.push(text);
    last = m.index + text.length;
  }
  if (last < s.length) out.push(last === 0 ? s : s.slice(last));
}
