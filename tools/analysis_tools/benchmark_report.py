"""What ``benchmark.py`` reports: the rows of each benchmark and their markdown tables.

:func:`bench_size`, :func:`bench_train` and :func:`bench_quant` each measure one size through
the harness and turn the runs into rows: the median of every metric per framework (or
variant), their ratio (``> 1``: mmllava, or the variant, is better) and whether the outputs
agree. These rows are what ``--out`` writes as JSON; :func:`markdown_table` and
:func:`quant_table` are what goes to stdout.
"""
import statistics

from benchmark_harness import _measure, log, read_bandwidth
from benchmark_specs import (
    FLOOR_METRIC,
    METRICS,
    QUANT_METRICS,
    QUANT_VARIANTS,
    SIZES,
    TRAIN_METRICS,
)


def _agreement(a: list, b: list) -> tuple:
    """Count the positions where two lists of token-id rows agree.

    Args:
        a: Token-id rows.
        b: Token-id rows, compared with ``a`` row by row, position by position.

    Returns:
        tuple: ``(equal positions, all positions)``.
    """
    pairs = [(x, y) for ra, rb in zip(a, b) for x, y in zip(ra, rb)]
    return sum(x == y for x, y in pairs), len(pairs)


def _rows(size: str, runs: dict, metrics: list, equal: bool, agreement: float,
          threads: int, repeats: int) -> list:
    """Make one row per metric: both frameworks' medians and their ratio.

    The ratio is oriented so that ``> 1`` always means mmllava is better (ours over theirs
    where higher is better, theirs over ours where lower is).

    Args:
        size: A key of ``SIZES``.
        runs: ``mmllava`` and ``transformers`` results, each holding every metric.
        metrics: ``(metric, unit, higher_is_better)`` tuples.
        equal: Whether the outputs (ids or losses) agreed everywhere.
        agreement: The share of tokens (or losses) that agreed.
        threads: Threads of each worker.
        repeats: Measured runs per framework.

    Returns:
        list: The rows, with the keys ``--out`` writes.
    """
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
    """Benchmark inference of both frameworks at one size; outputs equal: ids token for token.

    Args:
        size: A key of ``SIZES``.
        repeats: Measured runs per framework (their median is reported).
        threads: Threads of each worker.
        tmpdir: Where the weights are written for the workers.
        retries: Redos of a run during which others used more than ``max_foreign`` of the CPU.
        max_foreign: The share of the CPU other processes may use during a run.
        max_wait: The most seconds to wait for a quiet machine before a run.

    Returns:
        list: The rows of ``METRICS``.
    """
    runs = _measure(size, repeats, threads, tmpdir, retries, max_foreign, max_wait)
    bandwidth = read_bandwidth(threads)  # in the same run: the floor of this machine now
    log(f'{size}: read bandwidth {bandwidth / 1e9:.1f} GB/s ({threads} threads)')
    equal = total = 0
    for a, b in zip(runs['mmllava'], runs['transformers']):
        for field in ('single_ids', 'batch_ids'):
            e, n = _agreement(a[field], b[field])
            equal, total = equal + e, total + n
    for res in (r for rs in runs.values() for r in rs):
        res['peak_memory'] = res['peak_memory_kib'] / 1024
        res['peak_memory_over_weights'] = (res['peak_memory_kib'] - res['rss_loaded_kib']) / 1024
        res['decode_floor_ratio'] = (bandwidth / res['bytes_per_token']) / res['decode_throughput']
    rows = _rows(size, runs, METRICS + [FLOOR_METRIC], equal == total, equal / total, threads,
                 repeats)
    for row in rows:
        if row['metric'] == FLOOR_METRIC[0]:
            row['read_bandwidth_gbps'] = round(bandwidth / 1e9, 2)
    return rows


def bench_train(size: str, repeats: int, threads: int, tmpdir: str, retries: int = 2,
                max_foreign: float = 0.1, max_wait: float = 0.0) -> list:
    """Benchmark a training step of both frameworks at one size; outputs equal: the losses.

    The losses of every step must agree within 1e-4 for the outputs to count as equal.

    Args:
        size: A key of ``SIZES``.
        repeats: Measured runs per framework (their median is reported).
        threads: Threads of each worker.
        tmpdir: Where the weights are written for the workers.
        retries: Ignored: training runs are never redone (see below).
        max_foreign: The share of the CPU other processes may use during a run.
        max_wait: The most seconds to wait for a quiet machine before a run.

    Returns:
        list: The rows of ``TRAIN_METRICS``.
    """
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
    Args:
        size: A key of ``SIZES``.
        repeats: Measured runs per variant (their median is reported).
        threads: Threads of each worker.
        tmpdir: Where the weights are written for the workers.
        retries: Redos of a run during which others used more than ``max_foreign`` of the CPU.
        max_foreign: The share of the CPU other processes may use during a run.
        max_wait: The most seconds to wait for a quiet machine before a run.

    Returns:
        list: The rows, keyed by ``variant`` and ``metric``.
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
    """Format the ``--quant`` rows as markdown: one line per size and metric, a column per variant.

    Below the table, one line per size and variant gives its agreement with fp32's answers.

    Args:
        rows: Rows of :func:`bench_quant`.

    Returns:
        str: The markdown.
    """
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
    """Format the rows comparing the frameworks as a markdown table, the one printed to stdout.

    Args:
        rows: Rows of :func:`bench_size` and :func:`bench_train`.

    Returns:
        str: The markdown.
    """
    lines = ['| size | dtype | metric | unit | mmllava | transformers | ratio | outputs equal |',
             '|---|---|---|---|---:|---:|---:|---|']
    for r in rows:
        eq = 'yes' if r['outputs_equal'] else f'no ({r["token_agreement"]:.1%} of tokens)'
        lines.append(f'| {r["size"]} | {r["dtype"]} | {r["metric"]} | {r["unit"]} | '
                     f'{r["mmllava"]:.2f} | {r["transformers"]:.2f} | {r["ratio"]:.2f} | {eq} |')
    return '\n'.join(lines)


