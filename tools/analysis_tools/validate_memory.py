"""Measure peak memory on this CPU and compare it with ``mmllava.engine.memory_estimate``.

A benchmark, not a test: its numbers go into ``docs/memory.md`` with this command. Each row
runs in a fresh worker process (this script with ``--worker``) so that its allocator state and
RSS high-water mark are its own:

1. glibc's malloc is pinned to return every block over 64 KiB to the system when it is freed
   (``MALLOC_MMAP_THRESHOLD_=65536``: without it the threshold grows and freed tensors stay in
   the heap), so the RSS follows the bytes of live tensors;
2. a warm-up step on a throwaway tiny model runs first (the libraries' one-time buffers);
3. the baseline is the RSS after that, the peak the high-water mark (``VmHWM``, reset through
   ``/proc/self/clear_refs``) over building the model, filling its weights (so that their
   pages exist), and the workload: two training steps (the second one has AdamW's states),
   a batched generation, or a closed-set ranking.

``peak - baseline`` is what the estimate counts (weights, gradients, optimizer states,
activations, cache, logits), with no CUDA context and no caching allocator: the GPU
allowances of :func:`mmllava.engine.memory_formulas.verdict` are left out of the comparison.

Example (the table of docs/memory.md)::

    python tools/analysis_tools/validate_memory.py --rows all --out memory_rows.json
"""
import json
import os
import os.path as osp
import subprocess
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from mmllava.utils.cli import make_parser, run_cli  # noqa: E402

MIB = 2**20
# name -> (size, workload, options)
ROWS = {
    'tiny-train': ('tiny', 'train', {}),
    'small-train': ('small', 'train', {}),
    'small-train-ckpt': ('small', 'train', dict(checkpointing=True)),
    'small-train-fulllogits': ('small', 'train', dict(full_logits=True)),
    'small-train-autocast': ('small', 'train', dict(autocast=True)),
    '1b-train-b1': ('1b', 'train', dict(batch=1)),
    'tiny-generate': ('tiny', 'generate', {}),
    'small-generate': ('small', 'generate', {}),
    '1b-generate': ('1b', 'generate', {}),
    'tiny-rank': ('tiny', 'rank', {}),
    'small-rank': ('small', 'rank', {}),
    '1b-rank': ('1b', 'rank', {}),
}
NEW_TOKENS = 32


def _ranking_inputs():
    from ranking_memory import make_inputs
    return make_inputs('ucf101', 8)


def _fill(model) -> None:
    """Give the (uninitialized) weights values, so that their pages are touched."""
    import torch
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.fill_(1.0) if 'norm' in name else p.normal_(0, 0.02)


def run_workload(size: str, workload: str, opts: dict, model=None) -> None:
    """Build the size's model and run the workload once (``model`` given: reuse it)."""
    import torch
    from benchmark_specs import (
        BATCH_TOKENS,
        EOS,
        PAD,
        _trainer,
        build_mmllava,
        make_inputs,
        make_train_inputs,
    )
    model = model or build_mmllava(size)
    _fill(model)
    if workload == 'train':
        if opts.get('checkpointing'):
            model.llm.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs=dict(use_reentrant=False))
        if opts.get('full_logits'):
            model._llm_keeps_logits = lambda: False  # transformers' loss: every position
        b = make_train_inputs(size)
        n = opts.get('batch')
        if n:
            b = {k: v[:n] for k, v in b.items()}
        step = _trainer('mmllava', model, size)
        ctx = (torch.autocast('cpu', dtype=torch.bfloat16) if opts.get('autocast')
               else torch.autocast('cpu', enabled=False))
        with ctx:  # the forward's autocast, as BF16OptimWrapper (backward runs outside it too)
            for _ in range(2):
                step(b)
    elif workload == 'generate':
        x = make_inputs(size)
        with torch.inference_mode():
            model.generate(x['batch'], attention_mask=x['batch_mask'], pixel_values=x['batch_px'],
                           max_new_tokens=BATCH_TOKENS, min_new_tokens=BATCH_TOKENS,
                           eos_token_id=EOS, pad_token_id=PAD, do_sample=False)
    else:
        inputs = _ranking_inputs()
        vocab = model.llm.config.vocab_size
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(3, vocab, (1, inputs['prompt_tokens']), generator=g)
        cands = [[t % vocab for t in c] for c in inputs['candidates']]
        with torch.no_grad():
            model.score_answers(ids, None, None, cands)


def worker(size: str, workload: str, opts: dict) -> dict:
    """Measure one row in this (fresh) process; see the module's docstring."""
    import gc

    import torch
    from benchmark_harness import _reset_peak_rss, _rss_kib
    torch.set_num_threads(2)
    torch.manual_seed(0)
    run_workload('tiny', workload, opts)  # warm-up: one-time library buffers
    gc.collect()
    base = _rss_kib('VmRSS')
    _reset_peak_rss()
    run_workload(size, workload, opts)
    peak = _rss_kib('VmHWM')
    return dict(measured_mib=(peak - base) / 1024)


def estimate(size: str, workload: str, opts: dict) -> dict:
    """The estimate of one row, from the same model built on the meta device."""
    import torch
    from benchmark_specs import BATCH, TRAIN_BATCH, TRAIN_TEXT_TOKENS, build_mmllava, make_inputs

    from mmllava.engine.memory_estimate import (
        Workload,
        count_model,
        eval_estimate,
        training_estimate,
    )
    with torch.device('meta'):
        model = build_mmllava(size)
    if workload == 'train':
        model.vision_tower.requires_grad_(False)  # as the benchmark's trainer
    c = count_model(model)
    img = c.vision['tokens'] - 1  # CLIP's class token is not a placeholder
    if workload == 'train':
        batch = opts.get('batch') or TRAIN_BATCH
        seq = 1 + TRAIN_TEXT_TOKENS - 1 + img
        w = Workload(batch=batch, seq_len=seq, labelled=TRAIN_TEXT_TOKENS - 1 - 16,
                     images=1, visual_tokens=img, padded=False)
        prec = 'autocast' if opts.get('autocast') else ('bf16' if c.param_bytes == 2 else 'fp32')
        out = training_estimate(c, w, precision=prec, checkpointing=opts.get('checkpointing',
                                                                             False),
                                cuda=False, full_logits=opts.get('full_logits', False))
    elif workload == 'generate':
        width = make_inputs(size)['batch'].shape[1]
        out = eval_estimate(c, BATCH, width, NEW_TOKENS, images=1)
    else:
        inputs = _ranking_inputs()
        out = eval_estimate(c, 1, inputs['prompt_tokens'],
                            candidates=[len(x) for x in inputs['candidates']], images=0)
    return dict(estimate_mib=out['peak'] / MIB,
                items_mib={k: round(v / MIB, 1) for k, v in out['items'].items()})


def markdown(rows: list) -> str:
    """The docs table of measured rows."""
    lines = ['| row | shape | workload | estimate (MiB) | measured (MiB) | estimate / measured |'
             ' command |', '|---|---|---|---|---|---|---|']
    for r in rows:
        size, workload, opts = ROWS[r['row']]
        what = workload + ''.join(f', {k}={v}' for k, v in opts.items())
        lines.append(f"| {r['row']} | {size} | {what} | {r['estimate_mib']:,.1f} | "
                     f"{r['measured_mib']:,.1f} | {r['ratio']:.3f} | "
                     f"`validate_memory.py --rows {r['row']}` |")
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = make_parser(description='Measured peak memory (CPU RSS) against the estimate')
    parser.add_argument('--rows', nargs='+', default=['all'],
                        help=f"rows to run: 'all' or some of {', '.join(ROWS)}")
    parser.add_argument('--out', help='write the rows to this JSON file')
    parser.add_argument('--estimate-only', action='store_true', help='skip the measurement')
    parser.add_argument('--table', metavar='JSON', help='print the markdown table of an --out '
                        'file (rows, estimate, measured, ratio) and exit')
    parser.add_argument('--worker', help=argparse_hidden())
    return parser.parse_args(argv)


def argparse_hidden():
    import argparse
    return argparse.SUPPRESS


def measure(name: str) -> dict:
    """Run a row's worker in a fresh process with glibc's mmap threshold pinned."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536', MALLOC_TRIM_THRESHOLD_='65536',
               OMP_NUM_THREADS='2')
    proc = subprocess.run([sys.executable, osp.abspath(__file__), '--worker', name],
                          capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f'{name}: worker failed: {proc.stderr[-2000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> list:
    args = parse_args(argv)
    if args.worker:
        size, workload, opts = ROWS[args.worker]
        print(json.dumps(worker(size, workload, opts)))
        return []
    if args.table:
        with open(args.table) as f:
            print(markdown(json.load(f)))
        return []
    names = list(ROWS) if args.rows == ['all'] else args.rows
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise ValueError(f'unknown rows {unknown}; choose from {list(ROWS)}')
    rows = []
    for name in names:
        size, workload, opts = ROWS[name]
        row = dict(row=name, **estimate(size, workload, opts))
        if not args.estimate_only:
            row.update(measure(name))
            row['ratio'] = row['estimate_mib'] / row['measured_mib']
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == '__main__':
    run_cli(main)
