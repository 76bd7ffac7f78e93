"""mmllava's decode loop against transformers' generate on the same random LLMs.

Every supported family (LLaMA with grouped KV heads, Mistral, Qwen2 with q/k/v biases), fp32:
greedy ids identical alone and as a left-padded batch of different prompt lengths, rows that
stop at EOS at different steps, seeded sampling identical (transformers' processors on the
same logits, the same multinomial draws), streamer calls alike; the fused weights stay the
modules' own tensors.
"""
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.generation.stopping_criteria import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from mmllava.engine.checkpoint import load_weights, save_weights
from mmllava.models.decoding import decode, fast_lm, unsupported_kwargs, unsupported_reason

BASE = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            vocab_size=300, max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
            pad_token_id=0)
FAMILIES = {
    'llama': dict(model_type='llama', num_key_value_heads=2),
    'mistral': dict(model_type='mistral', num_key_value_heads=1, sliding_window=None),
    'qwen2': dict(model_type='qwen2', num_key_value_heads=2, bos_token_id=None),
}


def build(family, seed=0):
    torch.manual_seed(seed)
    cfg = dict(BASE, **FAMILIES[family])
    llm = AutoModelForCausalLM.from_config(AutoConfig.for_model(cfg.pop('model_type'), **cfg),
                                           attn_implementation='sdpa').eval()
    with torch.no_grad():  # larger weights than the init: logits far from ties
        for p in llm.parameters():
            p.normal_(0, 0.08) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    return llm


def prompts(llm, lengths, seed=1):
    """Left-padded random prompt embeddings of ``lengths``, and their mask."""
    gen = torch.Generator().manual_seed(seed)
    n = max(lengths)
    ids = torch.zeros(len(lengths), n, dtype=torch.long)
    mask = torch.zeros(len(lengths), n, dtype=torch.long)
    for row, length in enumerate(lengths):
        ids[row, n - length:] = torch.randint(3, BASE['vocab_size'], (length, ), generator=gen)
        mask[row, n - length:] = 1
    with torch.no_grad():
        embeds = llm.get_input_embeddings()(ids)
    return embeds, mask


def reference(llm, embeds, mask, **kwargs):
    with torch.no_grad():
        return llm.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)


@pytest.mark.parametrize('family', sorted(FAMILIES))
@pytest.mark.parametrize('lengths', [(7, ), (5, 11, 2)], ids=['single', 'batch'])
def test_greedy_ids_match_transformers(family, lengths):
    llm = build(family)
    embeds, mask = prompts(llm, lengths)
    want = reference(llm, embeds, mask, max_new_tokens=24, do_sample=False, eos_token_id=None,
                     pad_token_id=0)
    got = decode(fast_lm(llm), embeds, mask, max_new_tokens=24)
    assert got.tolist() == want.tolist()
    # And the logits of the prompt's last position equal transformers' forward.
    lm = fast_lm(llm)
    cache = lm.new_cache(embeds.shape[0], embeds.shape[1])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    from mmllava.models.decoding.loop import _prefill_mask
    ours = lm.forward(embeds, positions, cache, 0, _prefill_mask(mask), causal=True)
    with torch.no_grad():
        theirs = llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits
    torch.testing.assert_close(ours, theirs[:, -1], atol=1e-5, rtol=0)


@pytest.mark.parametrize('family', ['llama', 'qwen2'])
def test_rows_stop_at_eos_and_are_padded_as_transformers(family):
    llm = build(family, seed=3)
    embeds, mask = prompts(llm, (6, 9, 4, 8), seed=5)
    free = decode(fast_lm(llm), embeds, mask, max_new_tokens=16)
    # Stop tokens that the rows really emit, at different steps.
    eos = sorted({free[0, 3].item(), free[2, 1].item()})
    want = reference(llm, embeds, mask, max_new_tokens=16, do_sample=False, eos_token_id=eos,
                     pad_token_id=0)
    got = decode(fast_lm(llm), embeds, mask, max_new_tokens=16, eos_token_id=eos,
                 pad_token_id=0)
    assert got.tolist() == want.tolist()
    assert got.shape[1] <= 16 and (got == 0).any()


@pytest.mark.parametrize('kwargs', [
    dict(temperature=0.7, top_k=20),
    dict(top_p=0.8, repetition_penalty=1.3),
    dict(temperature=1.4, top_k=0, top_p=0.95, min_new_tokens=5),
], ids=['temp-topk', 'topp-rep', 'all'])
def test_seeded_sampling_matches_transformers(kwargs):
    llm = build('llama', seed=7)
    embeds, mask = prompts(llm, (5, 8), seed=2)
    eos = [2]
    torch.manual_seed(1234)
    want = reference(llm, embeds, mask, max_new_tokens=20, do_sample=True, eos_token_id=eos,
                     pad_token_id=0, **kwargs)
    torch.manual_seed(1234)
    got = decode(fast_lm(llm), embeds, mask, max_new_tokens=20, do_sample=True,
                 eos_token_id=eos, pad_token_id=0, **kwargs)
    assert got.tolist() == want.tolist()
    torch.manual_seed(99)  # other seeds, other samples: the draws are really random
    other = decode(fast_lm(llm), embeds, mask, max_new_tokens=20, do_sample=True,
                   eos_token_id=eos, pad_token_id=0, **kwargs)
    assert other.tolist() != got.tolist()


class Recorder(BaseStreamer):
    def __init__(self):
        self.calls = []

    def put(self, value):
        self.calls.append(('put', value.tolist()))

    def end(self):
        self.calls.append(('end', None))


class StopAfter(StoppingCriteria):
    def __init__(self, steps):
        self.steps = steps

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0], ), input_ids.shape[1] >= self.steps)


def test_streamer_and_stopping_criteria_as_transformers():
    llm = build('mistral', seed=2)
    embeds, mask = prompts(llm, (6, ), seed=4)
    theirs, ours = Recorder(), Recorder()
    reference(llm, embeds, mask, max_new_tokens=12, do_sample=False, eos_token_id=None,
              pad_token_id=0, streamer=theirs,
              stopping_criteria=StoppingCriteriaList([StopAfter(5)]))
    got = decode(fast_lm(llm), embeds, mask, max_new_tokens=12, streamer=ours,
                 stopping_criteria=StoppingCriteriaList([StopAfter(5)]))
    assert got.shape == (1, 5)
    assert ours.calls == theirs.calls
    assert ours.calls[0] == ('put', [[]]) and ours.calls[-1] == ('end', None)


def test_stop_strings_end_a_row():
    class Chars:  # a tokenizer whose token i decodes to chr(97 + i % 26)
        def decode(self, ids, skip_special_tokens=False):
            return ''.join(chr(97 + i % 26) for i in ids)

    llm = build('llama', seed=4)
    embeds, mask = prompts(llm, (6, ), seed=8)
    free = decode(fast_lm(llm), embeds, mask, max_new_tokens=16)[0].tolist()
    text = Chars().decode(free)
    stop = text[5:7]
    first = text.index(stop) + len(stop)
    got = decode(fast_lm(llm), embeds, mask, max_new_tokens=16, stop_strings=[stop],
                 tokenizer=Chars())
    assert got[0].tolist() == free[:first]
    with pytest.raises(ValueError, match='tokenizer'):
        decode(fast_lm(llm), embeds, mask, max_new_tokens=4, stop_strings=['x'])


def test_fused_weights_are_the_modules_own_tensors(tmp_path):
    llm = build('qwen2', seed=5)
    before = {k: v.clone() for k, v in llm.state_dict().items()}
    lm = fast_lm(llm)
    attn = llm.model.layers[0].self_attn
    layer = lm.layers[0]
    assert attn.k_proj.weight.data_ptr() == layer.qkv[attn.q_proj.weight.shape[0]].data_ptr()
    assert attn.v_proj.bias.data_ptr() == layer.qkv_bias[-attn.v_proj.bias.shape[0]].data_ptr()
    after = llm.state_dict()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    save_weights(after, tmp_path / 'w.safetensors')  # views are saved as their own tensors
    for key, value in load_weights(tmp_path / 'w.safetensors').items():
        assert torch.equal(value, before[key]), key
    # An in-place update (an optimizer step) reaches the fused matrix: still valid.
    with torch.no_grad():
        attn.q_proj.weight.add_(1.0)
    assert fast_lm(llm) is lm and torch.equal(layer.qkv[0], attn.q_proj.weight[0])
    # New tensors (.to, assigned weights) are noticed and fused again.
    llm.to(torch.float64)
    assert fast_lm(llm) is not lm and fast_lm(llm).dtype == torch.float64


def test_what_goes_to_transformers_generate():
    assert unsupported_kwargs(dict(num_beams=3)) == ['num_beams']
    assert unsupported_kwargs(dict(no_repeat_ngram_size=2)) == ['no_repeat_ngram_size']
    assert unsupported_kwargs(dict(num_beams=1, do_sample=True, top_p=0.9)) == []
    llm = build('llama')
    assert unsupported_reason(llm) is None
    from peft import LoraConfig, get_peft_model
    lora = get_peft_model(build('llama'), LoraConfig(r=2, target_modules=['q_proj']))
    assert 'not nn.Linear' in unsupported_reason(lora.base_model.model)
    gpt2 = AutoModelForCausalLM.from_config(AutoConfig.for_model(
        'gpt2', n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    assert "model_type 'gpt2'" in unsupported_reason(gpt2)


def test_bf16_decode_copies_prefill_stays_fp32():
    llm = build('llama', seed=6)
    embeds, mask = prompts(llm, (9, 4), seed=3)
    lm = fast_lm(llm)
    fp32 = decode(lm, embeds, mask, max_new_tokens=12)
    bf16 = decode(lm, embeds, mask, max_new_tokens=12, decode_dtype='bfloat16')
    assert bf16.shape == fp32.shape
    assert torch.equal(bf16[:, 0], fp32[:, 0])  # the first token comes from the fp32 prefill
    per_layer, head = lm.decode_matrices(torch.bfloat16)
    assert head.dtype == torch.bfloat16 and per_layer[0][0].dtype == torch.bfloat16
    assert llm.lm_head.weight.dtype == torch.float32  # the model itself is untouched
    with torch.no_grad():  # an optimizer step: the copies are made again
        llm.model.layers[1].mlp.down_proj.weight.mul_(0.5)
    again, _ = lm.decode_matrices(torch.bfloat16)
    torch.testing.assert_close(again[1][3].float(), llm.model.layers[1].mlp.down_proj.weight,
                               atol=1e-2, rtol=1e-2)
    assert not torch.equal(again[1][3], per_layer[1][3])
    with pytest.raises(ValueError, match='decode_dtype must be one of'):
        decode(lm, embeds, mask, max_new_tokens=2, decode_dtype='int3')


@pytest.mark.parametrize('rows', [1, 3])
def test_split_products_equal_torch(rows):
    from mmllava.models.decoding.linear import decode_threads, split_linear
    weight = torch.randn(1029, 300)
    x = torch.randn(rows, 1, 300)
    with decode_threads():
        assert torch.get_num_threads() == 1  # inside the steps: torch on one thread
        got = split_linear(x, weight, threads=3)
    assert got is not None and got.shape == (rows, 1, 1029)
    torch.testing.assert_close(got, torch.nn.functional.linear(x, weight), atol=1e-5, rtol=0)
    assert split_linear(torch.randn(40, 300), weight) is None  # a prefill: not split
    with torch.inference_mode():  # the workers run in the caller's mode
        got = split_linear(x, weight, threads=2)
    torch.testing.assert_close(got, torch.nn.functional.linear(x, weight), atol=1e-5, rtol=0)


def test_greedy_ids_identical_with_every_product_split(monkeypatch):
    """The tiny stand-ins' matrices are below the split size: split them all anyway."""
    import mmllava.models.decoding.linear as linear_mod
    monkeypatch.setattr(linear_mod, 'SPLIT_MIN_ELEMENTS', 1)
    calls = []
    real = linear_mod.split_linear

    def counting(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(linear_mod, 'split_linear', counting)
    threads = torch.get_num_threads()
    for family in ('llama', 'qwen2'):
        llm = build(family, seed=9)
        embeds, mask = prompts(llm, (4, 10), seed=6)
        want = reference(llm, embeds, mask, max_new_tokens=16, do_sample=False,
                         eos_token_id=None, pad_token_id=0)
        assert decode(fast_lm(llm), embeds, mask, max_new_tokens=16).tolist() == want.tolist()
    assert torch.get_num_threads() == threads  # restored after the steps
    if threads > 1:
        assert sum(calls) > 0


def test_pool_raises_the_workers_error_and_stays_usable():
    from mmllava.models.decoding.linear import _pool, split_linear
    pool = _pool(2)

    def boom():
        raise RuntimeError('from the worker')

    with pytest.raises(RuntimeError, match='from the worker'):
        pool.run(lambda: None, [boom])
    weight = torch.randn(700, 400)
    x = torch.randn(1, 400)
    torch.testing.assert_close(split_linear(x, weight, threads=2), x @ weight.t(),
                               atol=1e-5, rtol=0)
    with pool.lock:  # busy in another thread: the caller multiplies alone
        assert split_linear(x, weight, threads=2) is None


def test_fused_under_inference_mode_still_trains():
    llm = build('llama', seed=11)
    embeds, mask = prompts(llm, (5, ), seed=1)
    with torch.inference_mode():
        decode(fast_lm(llm), embeds, mask, max_new_tokens=3)
    llm.train()
    loss = llm(input_ids=torch.tensor([[5, 6, 7, 8]]), labels=torch.tensor([[5, 6, 7, 8]])).loss
    loss.backward()
    assert llm.model.layers[0].self_attn.q_proj.weight.grad is not None


def test_split_products_outside_no_grad_and_int8_copies(monkeypatch):
    """The pool's workers keep grad mode off whatever the caller's; int8 decode copies
    (per-channel weights, per-token activations) stay close to the fp32 product."""
    from mmllava.models.decoding.linear import Int8Matrix, decode_threads, linear
    weight = torch.randn(700, 400, requires_grad=True)
    x = torch.randn(1, 1, 400)
    with decode_threads():
        got = linear(x, weight)  # grad mode on here; the product itself needs none
        q = linear(x, Int8Matrix(weight))
    want = torch.nn.functional.linear(x, weight)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert (q - want).abs().max() < 0.05 * want.abs().max()
    llm = build('llama', seed=12)
    embeds, mask = prompts(llm, (7, 3), seed=2)
    fp32 = decode(fast_lm(llm), embeds, mask, max_new_tokens=8)
    int8 = decode(fast_lm(llm), embeds, mask, max_new_tokens=8, decode_dtype='int8')
    assert torch.equal(int8[:, 0], fp32[:, 0]) and int8.shape == fp32.shape


def test_a_users_processor_runs_before_the_sampling_warpers_as_in_generate():
    from transformers import LogitsProcessorList

    class Boost:  # makes a token that top_k would drop the likeliest one
        def __call__(self, input_ids, scores):
            scores = scores.clone()
            scores[:, 7] = scores.max() + 5.0
            return scores

    llm = build('qwen2', seed=13)
    embeds, mask = prompts(llm, (6, ), seed=9)
    kwargs = dict(max_new_tokens=10, do_sample=True, top_k=3, eos_token_id=None,
                  pad_token_id=0)
    torch.manual_seed(3)
    want = reference(llm, embeds, mask, logits_processor=LogitsProcessorList([Boost()]),
                     **kwargs)
    torch.manual_seed(3)
    got = decode(fast_lm(llm), embeds, mask, logits_processor=[Boost()], **kwargs)
    assert got.tolist() == want.tolist() and (got == 7).float().mean() > 0.5
