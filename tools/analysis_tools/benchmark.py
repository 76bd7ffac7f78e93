"""Benchmark mmllava's LLaVA against transformers' ``LlavaForConditionalGeneration``.

Both frameworks get the same random weights (built once, saved to a temporary safetensors
file, loaded by each), the same inputs, dtype, sdpa attention and thread count. Each framework
lives in its own worker subprocess, so imports, allocator state and the RSS high-water mark
are its own; the parent drives them in turn (A, B, A, B, ...) after one warm-up each.

Example::

    python tools/analysis_tools/benchmark.py --sizes tiny small 1b --out results.json

Metrics (one row each per size; ``ratio > 1`` means mmllava is better):

- ``prefill_latency`` (ms): one image + a 30-token prompt, from the ``generate`` call to the
  first logits (vision encoder, projector, embedding scatter and LLM prefill).
- ``decode_throughput`` (tokens/s): the 63 steps after the first token of a 64-token greedy
  generation, timed between the first and last logits (a no-op logits processor stamps them).
- ``batch8_throughput`` (samples/s): 8 different images and prompts, left padded, 32 tokens.
- ``peak_memory`` (MiB): the worker's peak RSS (``VmHWM``, reset through
  ``/proc/self/clear_refs`` at the start of each run), weights and imports included.
- ``peak_memory_over_weights`` (MiB): that peak minus the RSS right after loading the
  weights: what inference itself costs (activations, KV cache, allocator slack).

With ``--train`` (rows for tiny and small, fp32): a training step (forward, backward, AdamW
step) at batch 4, each sample one image and 128 text tokens, the vision tower frozen and the
projector and LLM trained, as in LLaVA's finetune; transformers' side is a plain PyTorch loop
over ``LlavaForConditionalGeneration`` with the same weights, batch and frozen parts.

- ``train_throughput`` (samples/s) over ``TRAIN_STEPS`` steps after one warm-up step.
- ``train_peak_memory`` (MiB): the worker's peak RSS over those steps.
- outputs equal: the losses of every step agree within 1e-4 (the same weights, batch and
  updates give the same losses).

With ``--quant`` (mmllava only): the same inference runs for the model in fp32, in bf16 and in
fp32 with the LLM's linear layers in dynamic int8 (``get_model(..., load_8bit=True)``), each in
its own worker, plus ``model_memory`` (MiB of parameters and buffers). ``ratio`` compares with
fp32 (``> 1``: better); ``answer_agreement`` is the share of the 9 prompts (the single one and
the batch of 8) whose greedy answer equals fp32's token for token, ``token_agreement`` the share
of equal positions.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

# Keep this module free of mmllava imports at the top: the transformers worker must not pay
# for them (imports show in its RSS).

BOS, EOS, PAD = 1, 2, 0
PLACEHOLDER = -200  # mmllava's image placeholder; transformers uses an id inside the vocab.
PROMPT_TOKENS = 30
DECODE_TOKENS = 64
BATCH = 8
BATCH_TOKENS = 32
TRAIN_BATCH = 4
TRAIN_TEXT_TOKENS = 128
TRAIN_STEPS = 3
TRAIN_SIZES = ('tiny', 'small')
QUANT_VARIANTS = ('fp32', 'bf16', 'int8')

_TEXT_COMMON = dict(max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
                    tie_word_embeddings=False, bos_token_id=BOS, eos_token_id=EOS)
SIZES = {
    'tiny': dict(
        dtype='float32',
        vision=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                    num_attention_heads=4, image_size=56, patch_size=14,
                    hidden_act='quick_gelu'),
        text=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=4, vocab_size=1000)),
    # CLIP ViT-B/16 at 224 + a 12-layer, 768-wide LLaMA.
    'small': dict(
        dtype='float32',
        vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12, image_size=224, patch_size=16,
                    hidden_act='quick_gelu'),
        text=dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                  num_attention_heads=12, num_key_value_heads=12, vocab_size=32000)),
    # CLIP ViT-L/14-336 + TinyLlama-1.1B's shape.
    '1b': dict(
        dtype='bfloat16',
        vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                    num_attention_heads=16, image_size=336, patch_size=14,
                    hidden_act='quick_gelu'),
        text=dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                  num_attention_heads=32, num_key_value_heads=4, vocab_size=32000)),
}
# (metric, unit, higher_is_better)
METRICS = [
    ('prefill_latency', 'ms', False),
    ('decode_throughput', 'tokens/s', True),
    ('batch8_throughput', 'samples/s', True),
    ('peak_memory', 'MiB', False),
    ('peak_memory_over_weights', 'MiB', False),
]
TRAIN_METRICS = [
    ('train_throughput', 'samples/s', True),
    ('train_peak_memory', 'MiB', False),
]
QUANT_METRICS = METRICS + [('model_memory', 'MiB', False)]
FRAMEWORKS = ('mmllava', 'transformers')


def log(msg: str) -> None:
    """Progress goes to stderr; stdout carries the table."""
    print(f'[benchmark {time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- models and weights
def _vision_cfg(size: str) -> dict:
    return dict(SIZES[size]['vision'])


def _text_cfg(size: str) -> dict:
    return {**_TEXT_COMMON, **SIZES[size]['text']}


def _image_token_id(size: str) -> int:
    # transformers embeds input_ids before scattering, so its placeholder must be a valid id.
    return SIZES[size]['text']['vocab_size'] - 1


def build_transformers(size: str):
    """transformers' LLaVA, uninitialized (the weights are loaded afterwards)."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )
    from transformers.initialization import no_init_weights

    cfg = LlavaConfig(vision_config=CLIPVisionConfig(**_vision_cfg(size)),
                      text_config=LlamaConfig(**_text_cfg(size)),
                      image_token_id=_image_token_id(size), projector_hidden_act='gelu',
                      vision_feature_layer=-2, vision_feature_select_strategy='default')
    with no_init_weights():
        model = LlavaForConditionalGeneration._from_config(
            cfg, attn_implementation='sdpa', dtype=getattr(torch, SIZES[size]['dtype']))
    return model.eval()


def build_mmllava(size: str, dtype: str = None):
    """mmllava's LLaVA with the same architecture, uninitialized (in the size's dtype)."""
    import torch
    from transformers.initialization import no_init_weights

    import mmllava.models  # noqa: F401  (registers the modules)
    from mmllava.registry import MODELS

    dtype = dtype or SIZES[size]['dtype']
    cfg = dict(
        type='LLaVA',
        vision_encoder=dict(type='HFCLIPVisionEncoder',
                            config=dict(_vision_cfg(size), attn_implementation='sdpa')),
        projector=dict(type='LLaVAProjector', projector_type='mlp2x_gelu'),
        llm=dict(type='HFCausalLM', config=dict(model_type='llama', **_text_cfg(size)),
                 attn_implementation='sdpa', torch_dtype=dtype))
    with no_init_weights():
        model = MODELS.build(cfg)
    # Cast only the vision side: the LLM is built in its dtype as transformers builds it
    # (a blanket .to() would also cast the rotary inv_freq buffer and change numerics).
    model.vision_tower.to(getattr(torch, dtype))
    model.projector.to(getattr(torch, dtype))
    return model.eval()


def make_weights(size: str, path: str, seed: int = 0) -> None:
    """Random weights (normal(0, 0.02); norms at 1) in transformers' layout, to ``path``."""
    import torch
    from safetensors.torch import save_file

    model = build_transformers(size)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if 'norm' in name:  # every LayerNorm / RMSNorm name holds 'norm' ('pre_layrnorm')
                param.fill_(1.0 if name.endswith('weight') else 0.0)
            else:
                param.normal_(0.0, 0.02, generator=gen)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)


def load_model(framework: str, size: str, weights: str, variant: str = None):
    """Load the weights; ``variant`` (mmllava, ``--quant``) is one of ``QUANT_VARIANTS``."""
    from safetensors.torch import load_file

    state = load_file(weights)
    if framework == 'transformers':
        model = build_transformers(size)
    else:
        dtype = {'fp32': 'float32', 'bf16': 'bfloat16', 'int8': 'float32'}.get(variant)
        model = build_mmllava(size, dtype)
        from mmllava.convert import hf_to_mmllava
        state = hf_to_mmllava(state)  # the weights are saved from transformers' memory layout
    model.load_state_dict(state, strict=True)
    if variant == 'int8':
        from mmllava.models.quantize import quantize_llm_int8
        quantize_llm_int8(model)  # what get_model(..., load_8bit=True) does after loading
    return model


# ---------------------------------------------------------------------- inputs
def make_inputs(size: str, seed: int = 0) -> dict:
    """The single prompt and the left-padded batch, with mmllava's placeholder id.

    Every prompt is ``BOS, text, <image> x N, text`` with ``PROMPT_TOKENS`` text tokens for the
    single prompt and 16..44 for the batch (so rows are padded differently).
    """
    import torch

    vis, vocab = SIZES[size]['vision'], SIZES[size]['text']['vocab_size']
    num_image = (vis['image_size'] // vis['patch_size'])**2
    gen = torch.Generator().manual_seed(seed)

    def prompt(num_text):
        text = torch.randint(3, vocab - 1, (num_text - 1, ), generator=gen).tolist()
        cut = len(text) // 4
        return [BOS] + text[:cut] + [PLACEHOLDER] * num_image + text[cut:]

    def images(n):
        return torch.randn(n, 3, vis['image_size'], vis['image_size'], generator=gen)

    single = torch.tensor([prompt(PROMPT_TOKENS)])
    rows = [prompt(PROMPT_TOKENS - 14 + 4 * i) for i in range(BATCH)]
    width = max(map(len, rows))
    batch = torch.tensor([[PAD] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return dict(single=single, single_mask=torch.ones_like(single), single_px=images(1),
                batch=batch, batch_mask=mask, batch_px=images(BATCH))


def make_train_inputs(size: str, seed: int = 1) -> dict:
    """A training batch: ``TRAIN_BATCH`` samples of one image and 128 text tokens each.

    Labels cover the text after the image (as an answer would); the image and the prompt
    before it are masked.
    """
    import torch

    vis, vocab = SIZES[size]['vision'], SIZES[size]['text']['vocab_size']
    num_image = (vis['image_size'] // vis['patch_size'])**2
    gen = torch.Generator().manual_seed(seed)
    text = torch.randint(3, vocab - 1, (TRAIN_BATCH, TRAIN_TEXT_TOKENS - 1), generator=gen)
    cut = 16
    ids = torch.cat([torch.full((TRAIN_BATCH, 1), BOS), text[:, :cut],
                     torch.full((TRAIN_BATCH, num_image), PLACEHOLDER), text[:, cut:]], 1)
    labels = ids.clone()
    labels[:, :1 + cut + num_image] = -100
    px = torch.randn(TRAIN_BATCH, 3, vis['image_size'], vis['image_size'], generator=gen)
    return dict(ids=ids, mask=torch.ones_like(ids), labels=labels, px=px)


def _trainer(framework: str, model, size: str):
    """``step(inputs) -> loss``: forward, backward and an AdamW step, vision frozen."""
    import torch

    vision = model.vision_tower if framework == 'mmllava' else model.model.vision_tower
    vision.requires_grad_(False)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-5)
    image_token = _image_token_id(size)

    def loss_mmllava(b):
        return model(dict(input_ids=b['ids'], attention_mask=b['mask'], labels=b['labels'],
                          pixel_values=b['px']), mode='loss')['loss']

    def loss_transformers(b):
        ids = b['ids'].masked_fill(b['ids'] == PLACEHOLDER, image_token)
        return model(input_ids=ids, attention_mask=b['mask'], pixel_values=b['px'],
                     labels=b['labels']).loss

    compute = loss_mmllava if framework == 'mmllava' else loss_transformers

    def step(batch) -> float:
        optim.zero_grad(set_to_none=True)
        loss = compute(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f'{framework}: non-finite training loss {loss}')
        loss.backward()
        optim.step()
        return loss.item()

    return step


def _train_run(step, inputs: dict, warmup: bool) -> dict:
    """One training measurement: ``TRAIN_STEPS`` steps (one for a warm-up)."""
    steps = 1 if warmup else TRAIN_STEPS
    _reset_peak_rss()
    busy0, total0 = _cpu_jiffies()
    own0 = os.times()
    t0 = time.perf_counter()
    losses = [step(inputs) for _ in range(steps)]
    elapsed = time.perf_counter() - t0
    busy1, total1 = _cpu_jiffies()
    own1 = os.times()
    own = (own1.user + own1.system) - (own0.user + own0.system)
    hz = os.sysconf('SC_CLK_TCK')
    foreign = max(0.0, (busy1 - busy0) / hz - own) / max((total1 - total0) / hz, 1e-9)
    return dict(train_throughput=TRAIN_BATCH * steps / elapsed,
                train_peak_memory_kib=_rss_kib('VmHWM'), losses=losses, seconds=elapsed,
                foreign_cpu=foreign)


# ---------------------------------------------------------------------- worker
def _rss_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def _reset_peak_rss() -> None:
    # Writing 5 resets VmHWM to the current RSS (Linux >= 4.0).
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')


def _cpu_jiffies() -> tuple:
    """(busy, total) jiffies of the whole machine; steal counts as busy (someone else ran)."""
    with open('/proc/stat') as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def foreign_cpu_share(seconds: float, own_pids=()) -> float:
    """The share of the machine's CPU used by processes other than ``own_pids`` over a window."""
    def own_ticks():
        ticks = 0
        for pid in own_pids:
            try:
                with open(f'/proc/{pid}/stat') as f:
                    fields = f.read().rsplit(')', 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
            except (OSError, IndexError, ValueError):
                pass
        return ticks

    busy0, total0 = _cpu_jiffies()
    own0 = own_ticks() + sum(os.times()[:2]) * os.sysconf('SC_CLK_TCK')
    time.sleep(seconds)
    busy1, total1 = _cpu_jiffies()
    own1 = own_ticks() + sum(os.times()[:2]) * os.sysconf('SC_CLK_TCK')
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / max(total1 - total0, 1)


class _Stamp:
    """A no-op logits processor that records when each step's logits are ready."""

    def __init__(self):
        self.times = []

    def __call__(self, input_ids, scores):
        self.times.append(time.perf_counter())
        return scores


def _generator(framework: str, model, size: str):
    """A ``generate(ids, mask, px, **kw) -> new ids`` for either framework."""
    image_token = _image_token_id(size)

    def gen_mmllava(ids, mask, px, **kw):
        return model.generate(ids, attention_mask=mask, pixel_values=px, **kw)

    def gen_transformers(ids, mask, px, **kw):
        ids = ids.masked_fill(ids == PLACEHOLDER, image_token)
        return model.generate(input_ids=ids, attention_mask=mask, pixel_values=px,
                              **kw)[:, ids.shape[1]:]

    return gen_mmllava if framework == 'mmllava' else gen_transformers


def _run(generate, inputs: dict, warmup: bool) -> dict:
    """One measurement: single-prompt generation, then the batch."""
    import torch
    from transformers import LogitsProcessorList

    # A shorter warm-up exercises the same shapes and kernels at a fraction of the time.
    n_single, n_batch = (4, 2) if warmup else (DECODE_TOKENS, BATCH_TOKENS)
    common = dict(do_sample=False, num_beams=1, eos_token_id=EOS, pad_token_id=PAD)
    stamp = _Stamp()
    _reset_peak_rss()
    busy0, total0 = _cpu_jiffies()
    own0 = os.times()
    with torch.inference_mode():
        t0 = time.perf_counter()
        single = generate(inputs['single'], inputs['single_mask'], inputs['single_px'],
                          min_new_tokens=n_single, max_new_tokens=n_single,
                          logits_processor=LogitsProcessorList([stamp]), **common)
        t1 = time.perf_counter()
        batch = generate(inputs['batch'], inputs['batch_mask'], inputs['batch_px'],
                         min_new_tokens=n_batch, max_new_tokens=n_batch, **common)
        t2 = time.perf_counter()
    busy1, total1 = _cpu_jiffies()
    own1 = os.times()
    own = (own1.user + own1.system) - (own0.user + own0.system)
    # Share of the machine's CPU time others used while we ran: a shared machine's noise.
    hz = os.sysconf('SC_CLK_TCK')
    foreign = max(0.0, (busy1 - busy0) / hz - own) / max((total1 - total0) / hz, 1e-9)
    assert single.shape == (1, n_single) and batch.shape == (BATCH, n_batch), \
        (single.shape, batch.shape)
    assert len(stamp.times) == n_single
    return dict(
        prefill_latency=(stamp.times[0] - t0) * 1e3,
        decode_throughput=(n_single - 1) / (stamp.times[-1] - stamp.times[0]),
        batch8_throughput=BATCH / (t2 - t1),
        peak_memory_kib=_rss_kib('VmHWM'),
        single_ids=single.tolist(), batch_ids=batch.tolist(),
        seconds=t2 - t0, foreign_cpu=foreign)


def worker(framework: str, size: str, weights: str, threads: int, train: bool = False,
           variant: str = None) -> None:
    """Load a model, then answer ``run`` / ``warmup`` lines on stdin with JSON lines."""
    # The protocol owns the real stdout; anything else printed goes to stderr.
    proto = os.fdopen(os.dup(1), 'w', buffering=1)
    sys.stdout = sys.stderr
    t = time.perf_counter()
    import gc

    import torch
    torch.set_num_threads(threads)
    model = load_model(framework, size, weights, variant)
    model_bytes = None
    if variant is not None:
        from mmllava.models.quantize import module_bytes
        model_bytes = module_bytes(model)
    if train:
        inputs = make_train_inputs(size)
        step = _trainer(framework, model, size)
    else:
        inputs = make_inputs(size)
        generate = _generator(framework, model, size)
    gc.collect()
    rss_loaded = _rss_kib('VmRSS')
    proto.write(json.dumps(dict(ready=True, load_s=time.perf_counter() - t,
                                rss_loaded_kib=rss_loaded,
                                threads=torch.get_num_threads())) + '\n')
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == 'quit':
            break
        if train:
            result = _train_run(step, inputs, warmup=(cmd == 'warmup'))
        else:
            result = _run(generate, inputs, warmup=(cmd == 'warmup'))
        result['rss_loaded_kib'] = rss_loaded
        if model_bytes is not None:
            result['model_bytes'] = model_bytes
        proto.write(json.dumps(result) + '\n')


# ---------------------------------------------------------------------- driver
class Worker:
    """A worker subprocess driven line by line."""

    def __init__(self, framework: str, size: str, weights: str, threads: int,
                 train: bool = False, variant: str = None):
        self.framework = framework if variant is None else f'{framework} {variant}'
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   TRANSFORMERS_VERBOSITY='error', TOKENIZERS_PARALLELISM='false')
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), '--worker', framework, '--size', size,
             '--weights', weights, '--threads', str(threads)] + (['--train'] if train else [])
            + (['--variant', variant] if variant else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f'The {self.framework} worker died (exit code '
                               f'{self.proc.wait()}); see its stderr above')
        return json.loads(line)

    def ask(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + '\n')
        self.proc.stdin.flush()
        return self.read()

    def close(self, clean: bool = True) -> None:
        if self.proc.poll() is not None:
            return
        if clean:
            self.proc.stdin.write('quit\n')
            self.proc.stdin.close()
        else:  # it may be mid-run: do not wait for it
            self.proc.terminate()
        self.proc.wait()


def _agreement(a: list, b: list) -> tuple:
    """(equal positions, all positions) of two lists of token-id rows."""
    pairs = [(x, y) for ra, rb in zip(a, b) for x, y in zip(ra, rb)]
    return sum(x == y for x, y in pairs), len(pairs)


def _wait_for_quiet(max_foreign: float, max_wait: float, own_pids) -> None:
    """Wait (at most ``max_wait`` s) until others use at most ``max_foreign`` of the CPU."""
    if max_wait <= 0:
        return
    start = time.perf_counter()
    while True:
        share = foreign_cpu_share(1.0, own_pids)
        if share <= max_foreign:
            return
        if time.perf_counter() - start >= max_wait:
            break
    log(f'other processes still use {share:.0%} of the CPU after {max_wait:.0f}s; '
        'measuring anyway')


def _measure(size: str, repeats: int, threads: int, tmpdir: str, retries: int,
             max_foreign: float, max_wait: float, train: bool = False,
             variants: tuple = ()) -> dict:
    """Start both workers on the same random weights; return their interleaved runs.

    With ``variants``, the workers are mmllava's in those ``QUANT_VARIANTS`` instead, and the
    runs are keyed by variant.

    On a shared machine, another process's burst spoils a run. Before each run, wait up to
    ``max_wait`` seconds for others to use at most ``max_foreign`` of the CPU; a run during
    which they used more is run again, at most ``retries`` times (the last attempt counts).
    """
    weights = os.path.join(tmpdir, f'{size}.safetensors')
    t = time.perf_counter()
    make_weights(size, weights)
    log(f'{size}: random weights built in {time.perf_counter() - t:.1f}s')
    if variants:
        workers = {v: Worker('mmllava', size, weights, threads, variant=v) for v in variants}
    else:
        workers = {fw: Worker(fw, size, weights, threads, train) for fw in FRAMEWORKS}
    mode = 'train' if train else 'inference'
    clean = False
    try:
        for fw, w in workers.items():
            info = w.read()
            log(f'{size}: {fw} loaded in {info["load_s"]:.1f}s, '
                f'RSS {info["rss_loaded_kib"] / 1024:.0f} MiB, {info["threads"]} threads')
        os.remove(weights)
        for fw, w in workers.items():
            t = time.perf_counter()
            w.ask('warmup')
            log(f'{size}: {fw} {mode} warm-up {time.perf_counter() - t:.1f}s')
        runs = {fw: [] for fw in workers}
        for i in range(repeats):
            for fw, w in workers.items():  # interleaved: A, B, A, B, ...
                for attempt in range(retries + 1):
                    _wait_for_quiet(max_foreign, max_wait, [v.proc.pid for v in workers.values()])
                    res = w.ask('run')
                    if train:
                        summary = f'{res["train_throughput"]:.2f} samples/s'
                    else:
                        summary = (f'prefill {res["prefill_latency"]:.1f} ms, '
                                   f'decode {res["decode_throughput"]:.1f} tok/s, '
                                   f'batch {res["batch8_throughput"]:.2f} samples/s')
                    log(f'{size}: {mode} run {i + 1}/{repeats} {fw}: {summary} '
                        f'({res["seconds"]:.1f}s, others used {res["foreign_cpu"]:.0%} CPU)')
                    if res['foreign_cpu'] <= max_foreign or attempt == retries:
                        break
                    log(f'{size}: other processes used {res["foreign_cpu"]:.0%} of the CPU; '
                        'running again')
                runs[fw].append(res)
        clean = True
    finally:
        for w in workers.values():
            w.close(clean)
    return runs


def _rows(size: str, runs: dict, metrics: list, equal: bool, agreement: float,
          threads: int, repeats: int) -> list:
    """Median rows of ``metrics`` (``ratio > 1``: mmllava better)."""
    rows = []
    for metric, unit, higher in metrics:
        ours = statistics.median(r[metric] for r in runs['mmllava'])
        theirs = statistics.median(r[metric] for r in runs['transformers'])
        if higher:
            ratio = ours / theirs
        else:
            ratio = theirs / ours if ours > 0 else float('inf')
        rows.append(dict(size=size, metric=metric, unit=unit, mmllava=round(ours, 3),
                         transformers=round(theirs, 3), ratio=round(ratio, 3),
                         outputs_equal=equal, token_agreement=round(agreement, 4),
                         dtype=SIZES[size]['dtype'], threads=threads, repeats=repeats,
                         max_foreign_cpu=round(max(r['foreign_cpu'] for rs in runs.values()
                                                   for r in rs), 3)))
    return rows


def bench_size(size: str, repeats: int, threads: int, tmpdir: str, retries: int = 2,
               max_foreign: float = 0.1, max_wait: float = 0.0) -> list:
    """Benchmark inference at one size; returns its rows."""
    runs = _measure(size, repeats, threads, tmpdir, retries, max_foreign, max_wait)
    equal = total = 0
    for a, b in zip(runs['mmllava'], runs['transformers']):
        for field in ('single_ids', 'batch_ids'):
            e, n = _agreement(a[field], b[field])
            equal, total = equal + e, total + n
    for res in (r for rs in runs.values() for r in rs):
        res['peak_memory'] = res['peak_memory_kib'] / 1024
        res['peak_memory_over_weights'] = (res['peak_memory_kib'] - res['rss_loaded_kib']) / 1024
    return _rows(size, runs, METRICS, equal == total, equal / total, threads, repeats)


def bench_train(size: str, repeats: int, threads: int, tmpdir: str, retries: int = 2,
                max_foreign: float = 0.1, max_wait: float = 0.0) -> list:
    """Benchmark a training step at one size; returns its rows."""
    # No retries: a training run changes the weights, so a redone run would leave the two
    # frameworks at different steps (their losses are compared step for step).
    runs = _measure(size, repeats, threads, tmpdir, 0, max_foreign, max_wait, train=True)
    pairs = [(a, b) for ra, rb in zip(runs['mmllava'], runs['transformers'])
             for a, b in zip(ra['losses'], rb['losses'])]
    close = sum(abs(a - b) <= 1e-4 for a, b in pairs)
    log(f'{size}: train losses mmllava {[r["losses"] for r in runs["mmllava"]]}, '
        f'transformers {[r["losses"] for r in runs["transformers"]]}')
    for res in (r for rs in runs.values() for r in rs):
        res['train_peak_memory'] = res['train_peak_memory_kib'] / 1024
    return _rows(size, runs, TRAIN_METRICS, close == len(pairs), close / len(pairs), threads,
                 repeats)


def bench_quant(size: str, repeats: int, threads: int, tmpdir: str, retries: int = 2,
                max_foreign: float = 0.1, max_wait: float = 0.0) -> list:
    """Benchmark mmllava in fp32, bf16 and int8 (``load_8bit``) at one size; returns its rows.

    A row per variant and metric: the median ``value``, its ``ratio`` to fp32 (``> 1``:
    better) and the variant's agreement with fp32's greedy answers.
    """
    runs = _measure(size, repeats, threads, tmpdir, retries, max_foreign, max_wait,
                    variants=QUANT_VARIANTS)
    for res in (r for rs in runs.values() for r in rs):
        res['peak_memory'] = res['peak_memory_kib'] / 1024
        res['peak_memory_over_weights'] = (res['peak_memory_kib'] - res['rss_loaded_kib']) / 1024
        res['model_memory'] = res['model_bytes'] / 2**20
    worst = round(max(r['foreign_cpu'] for rs in runs.values() for r in rs), 3)
    medians = {v: {m: statistics.median(r[m] for r in runs[v]) for m, _, _ in QUANT_METRICS}
               for v in runs}
    rows = []
    for variant in runs:
        # Every measured run's answers against fp32's run of the same round.
        answers = equal_answers = tokens = equal_tokens = 0
        for ours, ref in zip(runs[variant], runs['fp32']):
            for field in ('single_ids', 'batch_ids'):
                e, n = _agreement(ours[field], ref[field])
                equal_tokens, tokens = equal_tokens + e, tokens + n
                answers += len(ref[field])
                equal_answers += sum(a == b for a, b in zip(ours[field], ref[field]))
        for metric, unit, higher in QUANT_METRICS:
            value, base = medians[variant][metric], medians['fp32'][metric]
            ratio = value / base if higher else (base / value if value > 0 else float('inf'))
            rows.append(dict(size=size, variant=variant, metric=metric, unit=unit,
                             value=round(value, 3), ratio=round(ratio, 3),
                             answer_agreement=round(equal_answers / answers, 4),
                             token_agreement=round(equal_tokens / tokens, 4),
                             threads=threads, repeats=repeats, max_foreign_cpu=worst))
    return rows


def quant_table(rows: list) -> str:
    """The ``--quant`` rows as markdown: one line per size and metric, a column per variant."""
    variants = [v for v in QUANT_VARIANTS if any(r['variant'] == v for r in rows)]
    lines = ['| size | metric | unit | ' + ' | '.join(variants) + ' | '
             + ' | '.join(f'{v}/fp32' for v in variants if v != 'fp32') + ' |',
             '|---|---|---|' + '---:|' * (2 * len(variants) - 1)]
    keys = list(dict.fromkeys((r['size'], r['metric'], r['unit']) for r in rows))
    by = {(r['size'], r['metric'], r['variant']): r for r in rows}
    for size, metric, unit in keys:
        values = ' | '.join(f'{by[size, metric, v]["value"]:.2f}' for v in variants)
        ratios = ' | '.join(f'{by[size, metric, v]["ratio"]:.2f}' for v in variants
                            if v != 'fp32')
        lines.append(f'| {size} | {metric} | {unit} | {values} | {ratios} |')
    lines.append('')
    for size, metric, _ in keys:
        if metric != QUANT_METRICS[0][0]:
            continue  # the agreement is the same on every row of a size and variant
        for v in variants[1:]:
            r = by[size, metric, v]
            lines.append(f'- {size} {v}: greedy answers equal to fp32 on '
                         f'{r["answer_agreement"]:.0%} of prompts, '
                         f'{r["token_agreement"]:.1%} of tokens')
    return '\n'.join(lines)


def markdown_table(rows: list) -> str:
    lines = ['| size | dtype | metric | unit | mmllava | transformers | ratio | outputs equal |',
             '|---|---|---|---|---:|---:|---:|---|']
    for r in rows:
        eq = 'yes' if r['outputs_equal'] else f'no ({r["token_agreement"]:.1%} of tokens)'
        lines.append(f'| {r["size"]} | {r["dtype"]} | {r["metric"]} | {r["unit"]} | '
                     f'{r["mmllava"]:.2f} | {r["transformers"]:.2f} | {r["ratio"]:.2f} | {eq} |')
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', nargs='+', default=['tiny', 'small'], choices=list(SIZES))
    parser.add_argument('--out', help='Write the rows as JSON to this file')
    parser.add_argument('--repeats', type=int, default=3, help='Measured runs per framework')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads for both (default: torch.get_num_threads())')
    parser.add_argument('--retries', type=int, default=2,
                        help='Redo a run at most this many times when other processes took '
                        'more than --max-foreign-cpu of the CPU during it')
    parser.add_argument('--max-foreign-cpu', type=float, default=0.1,
                        help='Share of the CPU other processes may use during a run')
    parser.add_argument('--max-wait', type=float, default=30.0,
                        help='Seconds to wait before each run for other processes to go '
                        'below --max-foreign-cpu')
    # Internal: run as a worker.
    parser.add_argument('--train', action='store_true',
                        help=f'add training rows (sizes {", ".join(TRAIN_SIZES)})')
    parser.add_argument('--only-train', action='store_true',
                        help='training rows only (implies --train)')
    parser.add_argument('--quant', action='store_true',
                        help='add rows for mmllava in fp32, bf16 and int8 (load_8bit)')
    parser.add_argument('--only-quant', action='store_true',
                        help='the --quant rows only')
    parser.add_argument('--worker', choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument('--variant', choices=QUANT_VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument('--size', help=argparse.SUPPRESS)
    parser.add_argument('--weights', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # run the finally blocks: workers are stopped


def main(argv=None) -> list:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if args.threads is None:
        import torch
        args.threads = torch.get_num_threads()
    if args.worker:
        worker(args.worker, args.size, args.weights, args.threads, train=args.train,
               variant=args.variant)
        return []
    if args.repeats < 1:
        raise SystemExit('--repeats must be at least 1')
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix='mmllava_bench_') as tmpdir:
        for size in args.sizes:
            if not (args.only_train or args.only_quant):
                rows += bench_size(size, args.repeats, args.threads, tmpdir, args.retries,
                                   args.max_foreign_cpu, args.max_wait)
            if (args.train or args.only_train) and not args.only_quant and size in TRAIN_SIZES:
                rows += bench_train(size, args.repeats, args.threads, tmpdir, args.retries,
                                    args.max_foreign_cpu, args.max_wait)
            if args.quant or args.only_quant:
                rows += bench_quant(size, args.repeats, args.threads, tmpdir, args.retries,
                                    args.max_foreign_cpu, args.max_wait)
    elapsed = time.perf_counter() - start
    log(f'done in {elapsed:.0f}s ({args.threads} threads, {args.repeats} repeats, '
        f'{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)')
    compared = [r for r in rows if 'variant' not in r]
    if compared:
        print(markdown_table(compared))
    if len(compared) < len(rows):
        print(quant_table([r for r in rows if 'variant' in r]))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(rows, f, indent=2)
            f.write('\n')
    return rows


if __name__ == '__main__':
    main()
