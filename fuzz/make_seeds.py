# Makes fuzz/seeds/TARGET/*: small valid inputs for each fuzz target.
#   python fuzz/make_seeds.py fuzz/seeds     (from the repository root)
# Needs pyarrow, gguf and numpy (pip), and the ARC-Easy and lm-eval files in
# the openweigh download cache (fetched by any run or test that uses them).
import gzip, io, json, os, shutil, sys, zipfile
import numpy as np, pyarrow as pa, pyarrow.ipc as ipc
root = sys.argv[1]; cache = os.path.join(os.environ.get('OPENWEIGH_CACHE') or os.environ.get('OPENWEIGH_HOME') or os.path.expanduser('~/.cache/openweigh'), 'files')
S = lambda t: os.makedirs(f'{root}/{t}', exist_ok=True) or f'{root}/{t}'
def w(t, name, data):
    with open(f'{S(t)}/{name}', 'wb') as f: f.write(data if isinstance(data, bytes) else data.encode())

# suite
for n in ['quick', 'standard', 'chat', 'reference']:
    shutil.copy(f'suites/{n}.yaml', f'{S("suite")}/{n}.yaml')
w('suite', 'local.yaml', '''name: local
tasks:
  - task: mc
    data_files: data.jsonl
    output_type: multiple_choice
    doc_to_text: "Question: {{question}}\\nAnswer:"
    doc_to_choice: "{{choices}}"
    doc_to_target: "{{label}}"
    num_fewshot: 1
    metric_list: [acc, acc_norm]
  - task: gen
    data_files: data.jsonl
    output_type: generate_until
    chat_template: true
    doc_to_text: "{{question}}"
    doc_to_target: "{{answer}}"
    generation_kwargs: {until: ["\\n"], max_gen_toks: 8}
    filter: last_word
    metric_list: [exact_match]
''')
w('suite', 'extends.yaml', 'name: small\nextends: quick\nsample: {hellaswag: 5}\n')

# template
doc = json.dumps({"question": "2 + 2?", "choices": {"text": ["3", "4"], "label": ["A", "B"]}, "answerKey": "B", "ctx": "A man [title] sits.", "answer": "x\n#### 4"})
for i, t in enumerate(["Question: {{question}}\nAnswer:", "{{choices.text}}", "{{choices.label.index(answerKey)}}",
                       "{{ctx | hellaswag_clean}}", "{{answer.split('####')[-1].strip()}}",
                       "{% for c in choices.text %}{{loop.index}}. {{c}}\n{% endfor %}", "{{ label | int }}"]):
    w('template', f't{i}', t.encode() + b'\0' + doc.encode())

# data
rows = b''.join(json.dumps(r).encode() + b'\n' for r in [{"q": "a", "label": 1}, {"q": "b", "label": 0}])
w('data', 'jsonl', b'\0' + rows)
w('data', 'jsonl_gz', b'\1' + gzip.compress(rows, mtime=0))
w('data', 'json', b'\2' + json.dumps([{"q": "a"}, {"q": "b"}]).encode())
w('data', 'oe_eval', b'\3' + json.dumps({"doc": {"id": 1, "q": "a"}, "request": {}}).encode() + b'\n')
with gzip.open(f'{cache}/arc_easy.test.requests.jsonl.gz') as f:
    w('data', 'oe_eval_real', b'\3' + b''.join(f.readline() for _ in range(2)))

# arrow: a file, a stream, two streams one after another, a real slice
t = pa.table({"question": ["2 + 2?", "Sky?"], "choices": [["3", "4"], ["blue", "red"]], "label": [1, 0],
              "extra": [{"a": 1.5, "b": None}, {"a": 2.0, "b": "x"}]})
def stream(tab):
    b = io.BytesIO(); wr = ipc.new_stream(b, tab.schema); wr.write_table(tab); wr.close(); return b.getvalue()
b = io.BytesIO(); wr = ipc.new_file(b, t.schema); wr.write_table(t); wr.close(); w('arrow', 'file', b.getvalue())
w('arrow', 'stream', stream(t)); w('arrow', 'two_streams', stream(t) + stream(t.slice(0, 1)))
real = ipc.open_stream(open(f'{cache}/arc_easy.validation.arrow', 'rb').read()).read_all().slice(0, 3)
w('arrow', 'arc_easy', stream(real))

# prices
lines = open('prices/litellm-1.110.2-open-weight.csv').read().splitlines()
w('prices', 'csv', '\n'.join(lines[:12]) + '\n')
w('prices', 'litellm_json', json.dumps({"together_ai/meta-llama/Llama-3-8b-chat-hf": {"litellm_provider": "together_ai", "mode": "chat", "input_cost_per_token": 2e-07, "output_cost_per_token": 2e-07}, "gpt-4": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 3e-05, "output_cost_per_token": 6e-05}}))

# lm_eval
for f in sorted(os.listdir(cache)):
    if f.startswith('lm_eval-') and f.endswith('.yaml'):
        shutil.copy(f'{cache}/{f}', f'{S("lm_eval")}/{f.split("lm_eval_tasks_")[1]}')

# gguf: a tiny llama with a BPE vocabulary, and a LoRA adapter for it
import gguf
def tiny(path, adapter=False):
    g = gguf.GGUFWriter(path, 'llama')
    if adapter:
        g.add_type('adapter'); g.add_string('adapter.type', 'lora'); g.add_float32('adapter.lora.alpha', 8.0)
        g.add_tensor('blk.0.attn_q.weight.lora_a', np.ones((2, 8), np.float32))
        g.add_tensor('blk.0.attn_q.weight.lora_b', np.ones((8, 2), np.float32))
    else:
        g.add_context_length(64); g.add_embedding_length(8); g.add_block_count(1); g.add_feed_forward_length(16)
        g.add_head_count(2); g.add_head_count_kv(1); g.add_layer_norm_rms_eps(1e-5); g.add_rope_freq_base(10000.0)
        toks = ['<|endoftext|>', 'H', 'e', 'l', 'o', ',', 'Ġ', 'w', 'r', 'd', '!', '2', '+', '=', '4', 'He', 'll', 'Hell', 'Hello']
        g.add_tokenizer_model('gpt2'); g.add_tokenizer_pre('smollm'); g.add_token_list(toks)
        g.add_token_types([3] + [1] * (len(toks) - 1)); g.add_token_merges(['H e', 'l l', 'He ll', 'Hell o'])
        g.add_bos_token_id(0); g.add_eos_token_id(0)
        g.add_chat_template("{% for m in messages %}<|im_start|>{{m['role']}}\n{{m['content']}}<|im_end|>\n{% endfor %}")
        v, d = len(toks), 8
        for name, shape in [('token_embd.weight', (v, d)), ('output_norm.weight', (d,)), ('blk.0.attn_norm.weight', (d,)),
                            ('blk.0.attn_q.weight', (d, d)), ('blk.0.attn_k.weight', (4, d)), ('blk.0.attn_v.weight', (4, d)),
                            ('blk.0.attn_output.weight', (d, d)), ('blk.0.ffn_norm.weight', (d,)), ('blk.0.ffn_gate.weight', (16, d)),
                            ('blk.0.ffn_up.weight', (16, d)), ('blk.0.ffn_down.weight', (d, 16))]:
            g.add_tensor(name, np.full(shape, 0.01, np.float32))
    g.write_header_to_file(); g.write_kv_data_to_file(); g.write_tensors_to_file(); g.close()
tiny(f'{S("gguf")}/tiny_llama.gguf'); tiny(f'{S("gguf")}/tiny_lora.gguf', adapter=True)
