/**
 * Incremental detokenization and stop strings, token by token: the pieces always join to what a
 * whole-sequence decode gives (SentencePiece's dummy space, byte-fallback characters split over several
 * tokens), and no piece ever holds a stop string or the start of one.
 */
import { describe, expect, it } from 'vitest';
import { heldBackLength } from '../../../src/models/textgen.js';
import { CompletionTextStream, IncrementalDetokenizer, StopStringFilter } from '../../../src/serve/http/stop.js';
import { SentencePieceBPE, TokenType } from '../../../src/tokenizer/index.js';
import { ByteTokenizer } from './fakes.js';

/** <unk>, <s>, </s>, 256 byte tokens, then a few pieces (everything else falls back to bytes). */
function spm(): SentencePieceBPE {
  const tokens = ['<unk>', '<s>', '</s>'];
  const types: number[] = [TokenType.Unknown, TokenType.Control, TokenType.Control];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(TokenType.Byte);
  }
  for (const p of ['▁', '▁the', '▁cat', 's', 'a', 't', 'h', 'e', 'c', '▁sat']) {
    tokens.push(p);
    types.push(TokenType.Normal);
  }
  return new SentencePieceBPE({ tokens, scores: tokens.map((_, i) => -i), tokenTypes: types, addSpacePrefix: true });
}

describe('IncrementalDetokenizer', () => {
  it.each(['the cat sat', ' the  cats é€ sat', '😀the😀'])('SentencePiece: pieces join to the whole decode (%j)', (text) => {
    const tok = spm();
    const prompt = tok.encode('the cat');
    const gen = tok.encode(text, { addSpecial: false });
    const d = new IncrementalDetokenizer(tok, prompt);
    const pieces = gen.map((t) => d.push(t));
    pieces.push(d.flush());
    const whole = tok.decode([...prompt, ...gen]).slice(tok.decode(prompt).length);
    expect(pieces.join('')).toBe(whole);
    for (const p of pieces) expect(p).not.toContain('\uFFFD');
  });

  it('holds an incomplete UTF-8 character until its last byte', () => {
    const tok = new ByteTokenizer();
    const d = new IncrementalDetokenizer(tok, []);
    const bytes = [...new TextEncoder().encode('€')];
    expect(bytes.map((b) => d.push(b))).toEqual(['', '', '€']);
  });

  it('flushes a character cut off by the end as U+FFFD', () => {
    const d = new IncrementalDetokenizer(new ByteTokenizer(), []);
    expect(d.push(0xe2)).toBe('');
    expect(d.flush()).toBe('\uFFFD');
  });
});

describe('StopStringFilter', () => {
  const run = (stops: string[], pieces: string[]) => {
    const f = new StopStringFilter(stops);
    const out: string[] = [];
    let stopped = false;
    for (const p of pieces) {
      const s = f.push(p);
      out.push(s.text);
      if (s.stopped) {
        stopped = true;
        break;
      }
    }
    if (!stopped) out.push(f.flush());
    return { text: out.join(''), out, stopped };
  };

  it('cuts before a stop string split over pieces, never sending its start', () => {
    const r = run(['END'], ['ab', 'cE', 'N', 'Dxyz']);
    expect(r).toMatchObject({ text: 'abc', stopped: true });
    expect(r.out).toEqual(['ab', 'c', '', '']);
  });

  it('releases a held-back prefix once it cannot be a stop string', () => {
    expect(run(['END'], ['aE', 'Nb']).out).toEqual(['a', 'ENb', '']);
    expect(run(['END'], ['aEN'])).toMatchObject({ text: 'aEN', stopped: false });
  });

  it('the earliest stop string wins; a stop string at the very start gives empty text', () => {
    expect(run(['yz', 'xy'], ['wxyz'])).toMatchObject({ text: 'w', stopped: true });
    expect(run(['\n\n'], ['\n', '\nrest'])).toMatchObject({ text: '', stopped: true });
  });

  it('heldBackLength is the longest suffix that starts some stop string', () => {
    expect(heldBackLength('abcST', ['STOP', 'TX'])).toBe(2);
    expect(heldBackLength('abcS', ['STOP', 'SAX'])).toBe(1);
    expect(heldBackLength('abc', ['STOP'])).toBe(0);
  });
});

describe('CompletionTextStream', () => {
  it('decodes and filters; flush sends the rest when no stop string came', () => {
    const tok = new ByteTokenizer();
    const s = new CompletionTextStream(tok, [], ['€!']);
    const sent = [...new TextEncoder().encode('a€€')].map((t) => s.push(t).text);
    // The last € could start '€!': held back until the end.
    expect(sent.join('')).toBe('a€');
    expect(s.flush()).toBe('€');
    expect(s.text).toBe('a€€');
    expect(s.stopped).toBe(false);
  });
});
