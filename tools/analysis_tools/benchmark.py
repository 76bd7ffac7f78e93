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
- ``decode_floor_ratio`` (x floor, lower is better): decode time per token over the
  memory-bandwidth floor, the weight bytes one step reads (decoder layers, final norm, LM head)
  divided by the read bandwidth measured in the same run (``read_bandwidth_gbps`` in the row).

With ``--server``: ``server_throughput_8_clients`` (tokens/s), 8 streaming clients against
``tools/serve.py`` with the tiny config, continuous batching (``--max-batch 8``) over one at a
time (``--max-batch 1``); ``tools/analysis_tools/serve_throughput.py`` has 1/4/8 clients and
time to first token.

With ``--train`` (rows for tiny and small, fp32): a training step (forward, backward, AdamW
step) at batch 4, each sample one image and 128 text tokens, the vision tower frozen and the
projector and LLM trained, as in LLaVA's finetune; transformers' side is a plain PyTorch loop
over ``LlavaForConditionalGeneration`` with the same weights, batch and frozen parts.

- ``train_throughput`` (samples/s) over ``TRAIN_STEPS`` steps after one warm-up step.
- ``train_peak_memory`` (MiB): the worker's peak RSS over those steps.
- outputs equal: the losses of every step agree within 1e-4 (the same weights, batch and
  updates give the same losses).

With ``--quant`` (mmllava only): the same inference runs for the model in fp32, in bf16, in
fp32 with the LLM's linear layers in dynamic int8 (``get_model(..., load_8bit=True)``) and in
fp32 with bf16 or int8 decode steps (``decode-bf16``, ``decode-int8``: ``decode_dtype``), each
in its own worker, plus ``model_memory`` (MiB of parameters and buffers). ``ratio`` compares with
fp32 (``> 1``: better); ``answer_agreement`` is the share of the 9 prompts (the single one and
the batch of 8) whose greedy answer equals fp32's token for token, ``token_agreement`` the share
of equal positions.
"""
import argparse
import json
import os
import signal
import sys
import tempfile
import time
from datetime import datetime, timezone

# The parts live next to this script: benchmark_specs (what is measured: sizes, models,
# weights, inputs), benchmark_harness (how: workers, timed runs, CPU and RSS accounting) and
# benchmark_report (the rows and their tables). Putting this directory on the path lets them be
# imported whether this file runs as a script, as a worker subprocess or is loaded by path.
# None of them imports mmllava at the top: the transformers worker must not pay for it (imports
# show in its RSS).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Besides what the CLI uses, SIZES, build_mmllava, _reset_peak_rss and _rss_kib are imported
# from here by ranking_memory.py.
from benchmark_harness import (  # noqa: E402
    _reset_peak_rss,  # noqa: F401
    _rss_kib,  # noqa: F401
    log,
    worker,
)
from benchmark_report import (  # noqa: E402
    bench_quant,
    bench_size,
    bench_train,
    markdown_table,
    quant_table,
)
from benchmark_specs import (  # noqa: E402
    FRAMEWORKS,
    QUANT_VARIANTS,
    SIZES,
    TRAIN_SIZES,
    build_mmllava,  # noqa: F401
)


def parse_args(argv=None):
    """Parse the command line, the user's or a worker's (``--worker`` and the hidden flags).

    Args:
        argv: The arguments; ``None`` for ``sys.argv[1:]``.

    Returns:
        argparse.Namespace: The options.
    """
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
    parser.add_argument('--server', action='store_true',
                        help='add server_throughput_8_clients: tools/serve.py with the tiny '
                        'config, 8 clients, continuous batching against one at a time')
    parser.add_argument('--worker', choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument('--variant', choices=QUANT_VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument('--size', help=argparse.SUPPRESS)
    parser.add_argument('--weights', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error('--repeats must be at least 1')
    return args


def server_row(seconds: float = 20) -> dict:
    """``server_throughput_8_clients``: aggregate completion tokens/s of 8 streaming clients
    against ``tools/serve.py`` with the tiny config, batched (``--max-batch 8``) over one at a
    time (``--max-batch 1``); every answer checked against the request answered alone."""
    from serve_throughput import run
    rows = run('configs/llava/llava-tiny_vqa.py', batches=(1, 8), clients=(8, ),
               seconds=seconds, log=log)
    one, batched = (next(r for r in rows if r['max_batch'] == b) for b in (1, 8))
    return dict(size='tiny', metric='server_throughput_8_clients', unit='tokens/s',
                value=batched['tokens_per_s'], one_at_a_time=one['tokens_per_s'],
                ratio=round(batched['tokens_per_s'] / one['tokens_per_s'], 3),
                ttft_p50_s=batched['ttft_p50_s'], ttft_p99_s=batched['ttft_p99_s'],
                outputs_equal=batched['wrong_answers'] == one['wrong_answers'] == 0)


def _exit_on_sigterm(signum, frame):
    """Turn SIGTERM into ``SystemExit``, so that ``finally`` blocks stop the workers."""
    raise SystemExit(128 + signum)  # run the finally blocks: workers are stopped


def main(argv=None) -> list:
    """Run the benchmark (or, with ``--worker``, serve as one of its workers).

    Prints the markdown tables to stdout and, with ``--out``, writes the rows as JSON.

    Args:
        argv: The arguments; ``None`` for ``sys.argv[1:]``.

    Returns:
        list: The rows (empty for a worker).
    """
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if args.threads is None:
        import torch
        args.threads = torch.get_num_threads()
    if args.worker:
        worker(args.worker, args.size, args.weights, args.threads, train=args.train,
               variant=args.variant)
        return []
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
    if args.server:
        rows.append(server_row())
    elapsed = time.perf_counter() - start
    log(f'done in {elapsed:.0f}s ({args.threads} threads, {args.repeats} repeats, '
        f'{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)')
    compared = [r for r in rows if 'variant' not in r and 'one_at_a_time' not in r]
    for r in rows:
        if 'one_at_a_time' in r:
            print(f"{r['metric']} ({r['size']}): {r['value']:.1f} {r['unit']} batched, "
                  f"{r['one_at_a_time']:.1f} one at a time: ratio {r['ratio']:.2f}")
    if compared:
        print(markdown_table(compared))
    if any('variant' in r for r in rows):
        print(quant_table([r for r in rows if 'variant' in r]))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(rows, f, indent=2)
            f.write('\n')
    return rows


if __name__ == '__main__':
    main()
