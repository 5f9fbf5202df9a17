/**
 * Chat messages → prompt text, through the model's own Jinja chat template (the `tokenizer.chat_template`
 * of a GGUF file), rendered with @huggingface/jinja exactly as Hugging Face's `apply_chat_template` does:
 * `messages`, `add_generation_prompt: true`, `bos_token`, `eos_token`.
 */
import { Template } from '@huggingface/jinja';
import type { ServedModelInfo } from '../types.js';

/**
 * ChatML (`<|im_start|>role\n...<|im_end|>\n`), for models that ship no template. It starts with the
 * BOS token when the model has one, as a base model expects its prompt to.
 */
export const DEFAULT_CHAT_TEMPLATE =
  '{% if bos_token %}{{ bos_token }}{% endif %}' +
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** A message as the template sees it: content already flattened to one string. */
export interface TemplateMessage {
  role: string;
  content: string;
  name?: string;
}

/** The template could not be parsed or rendered (including the template's own `raise_exception`). */
export class ChatTemplateError extends Error {
  override name = 'ChatTemplateError';
}

/** Parsed templates by source: parsing is the expensive part and a server renders one template forever. */
const cache = new Map<string, Template>();

function compile(source: string): Template {
  let t = cache.get(source);
  if (!t) {
    try {
      t = new Template(source);
    } catch (e) {
      throw new ChatTemplateError(`the model's chat template does not parse: ${(e as Error).message}`);
    }
    cache.set(source, t);
  }
  return t;
}

/** The prompt text for `messages`, ending with the assistant turn's opening. */
export function renderChatPrompt(model: Pick<ServedModelInfo, 'chatTemplate' | 'bosToken' | 'eosToken'>, messages: readonly TemplateMessage[]): string {
  const template = compile(model.chatTemplate ?? DEFAULT_CHAT_TEMPLATE);
  try {
    return template.render({
      messages: messages.map((m) => ({ ...m })),
      add_generation_prompt: true,
      bos_token: model.bosToken ?? '',
      eos_token: model.eosToken ?? '',
    });
  } catch (e) {
    throw new ChatTemplateError((e as Error).message);
  }
}

/**
 * Special tokens that end an assistant turn in common templates (ChatML, Llama 3, Phi-3, Gemma). When
 * the tokenizer has one of them, generation stops there too, not only at end-of-sequence.
 */
export const END_OF_TURN_TOKENS = ['<|im_end|>', '<|eot_id|>', '<|end|>', '<end_of_turn>'] as const;
