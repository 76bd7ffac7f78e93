"""tools/analysis_tools/benchmark.py: its parts in isolation, then the tool end to end.

The script is split into benchmark_specs (what is measured), benchmark_harness (how: workers,
timed runs, CPU accounting, retries) and benchmark_report (rows and tables), with the CLI in
benchmark.py; the tests follow that layout. The parts are tested on fakes (no model, no
subprocess) so that their logic is checked quickly and exactly; the end-to-end run on the tiny
size checks that real workers start, agree and write the documented keys (no timing
assertions).
"""
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parents[2] / 'tools' / 'analysis_tools' / 'benchmark.py'
METRICS = {'prefill_latency', 'decode_throughput', 'batch8_throughput', 'peak_memory',
           'peak_memory_over_weights', 'decode_floor_ratio'}
TRAIN_METRICS = {'train_throughput', 'train_peak_memory'}


def _load_script():
    """Load benchmark.py by path, as a tool is loaded; it puts its parts on ``sys.path``."""
    spec = importlib.util.spec_from_file_location('benchmark_tool', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_script()
specs = importlib.import_module('benchmark_specs')
harness = importlib.import_module('benchmark_harness')
report = importlib.import_module('benchmark_report')


# ---------------------------------------------------------------------- layout
def test_parts_are_found_next_to_the_script():
    for module in (specs, harness, report):
        assert Path(module.__file__).parent == SCRIPT.parent, module.__file__
    # The workers are started from the script, which parses --worker.
    assert Path(harness.SCRIPT) == SCRIPT


def test_names_other_tools_import_from_the_script():
    # ranking_memory.py does `from benchmark import SIZES, _reset_peak_rss, _rss_kib,
    # build_mmllava`.
    assert bench.SIZES is specs.SIZES
    assert bench.build_mmllava is specs.build_mmllava
    assert bench._rss_kib is harness._rss_kib
    assert bench._reset_peak_rss is harness._reset_peak_rss


def test_parts_do_not_import_mmllava_at_the_top():
    # The transformers worker imports the script and its parts: mmllava must not show in its
    # RSS. A fresh interpreter, as a worker is.
    code = ('import sys; sys.argv = ["x"]; import runpy; '
            f'runpy.run_path({str(SCRIPT)!r}, run_name="not_main"); '
            'print(sorted(m for m in sys.modules if m.split(".")[0] == "mmllava"))')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == '[]'


# ---------------------------------------------------------------------- specs
def test_inputs_hold_one_image_each_and_are_left_padded():
    inputs = specs.make_inputs('tiny')
    vis = specs.SIZES['tiny']['vision']
    num_image = (vis['image_size'] // vis['patch_size'])**2
    single = inputs['single'][0].tolist()
    assert len(single) == specs.PROMPT_TOKENS + num_image
    assert single[0] == specs.BOS and single.count(specs.PLACEHOLDER) == num_image
    assert inputs['single_mask'].tolist() == [[1] * len(single)]
    assert inputs['single_px'].shape == (1, 3, vis['image_size'], vis['image_size'])

    batch, mask = inputs['batch'], inputs['batch_mask']
    assert batch.shape[0] == specs.BATCH and inputs['batch_px'].shape[0] == specs.BATCH
    lengths = mask.sum(1).tolist()
    assert len(set(lengths)) == specs.BATCH  # every row padded differently
    for row, row_mask, n in zip(batch.tolist(), mask.tolist(), lengths):
        pad = len(row) - n
        assert row_mask == [0] * pad + [1] * n and row[:pad] == [specs.PAD] * pad
        assert row[pad] == specs.BOS and row.count(specs.PLACEHOLDER) == num_image
    # Both workers draw the same inputs.
    again = specs.make_inputs('tiny')
    assert all(torch.equal(inputs[k], again[k]) for k in inputs)


def test_train_labels_cover_the_text_after_the_image():
    batch = specs.make_train_inputs('tiny')
    vis = specs.SIZES['tiny']['vision']
    num_image = (vis['image_size'] // vis['patch_size'])**2
    ids, labels = batch['ids'], batch['labels']
    assert ids.shape == (specs.TRAIN_BATCH, specs.TRAIN_TEXT_TOKENS + num_image)
    first = int((ids[0] == specs.PLACEHOLDER).nonzero().max()) + 1  # after the image
    assert (labels[:, :first] == -100).all()
    assert torch.equal(labels[:, first:], ids[:, first:])
    assert batch['px'].shape[0] == specs.TRAIN_BATCH


@pytest.mark.parametrize('size', list(bench.SIZES))
def test_transformers_image_token_is_a_free_id_in_the_vocab(size):
    token = specs._image_token_id(size)
    assert 0 <= token < specs.SIZES[size]['text']['vocab_size']
    assert token not in (specs.BOS, specs.EOS, specs.PAD)


# ---------------------------------------------------------------------- harness
def test_peak_rss_resets_to_the_current_rss():
    block = bytearray(128 * 2**20)  # touched (zeroed) pages: RSS goes up by 128 MiB
    peak = harness._rss_kib('VmHWM')
    del block
    harness._reset_peak_rss()
    assert harness._rss_kib('VmHWM') < peak - 64 * 1024


def test_timed_run_reports_every_metric_from_the_logits_stamps():
    calls = []

    def generate(ids, mask, px, min_new_tokens, max_new_tokens, logits_processor=None, **kw):
        assert min_new_tokens == max_new_tokens and kw['do_sample'] is False
        calls.append(max_new_tokens)
        for _ in range(max_new_tokens):
            time.sleep(0.002)
            if logits_processor is not None:
                logits_processor(None, None)
        return torch.zeros(ids.shape[0], max_new_tokens, dtype=torch.long)

    inputs = specs.make_inputs('tiny')
    warm = harness._run(generate, inputs, warmup=True)
    res = harness._run(generate, inputs, warmup=False)
    assert calls == [4, 2, specs.DECODE_TOKENS, specs.BATCH_TOKENS]
    assert len(warm['single_ids'][0]) == 4
    assert len(res['single_ids'][0]) == specs.DECODE_TOKENS
    assert [len(r) for r in res['batch_ids']] == [specs.BATCH_TOKENS] * specs.BATCH
    assert {'prefill_latency', 'decode_throughput', 'batch8_throughput', 'peak_memory_kib',
            'seconds', 'foreign_cpu'} <= set(res)
    # Each decode step takes at least the 2 ms sleep, so at most 500 tokens/s.
    assert 0 < res['decode_throughput'] <= 500
    assert res['prefill_latency'] >= 2 and 0 <= res['foreign_cpu'] <= 1


def test_train_run_takes_one_step_to_warm_up_then_train_steps():
    losses = iter(range(100))
    warm = harness._train_run(lambda batch: float(next(losses)), {}, warmup=True)
    res = harness._train_run(lambda batch: float(next(losses)), {}, warmup=False)
    assert warm['losses'] == [0.0]
    assert res['losses'] == [float(i) for i in range(1, 1 + specs.TRAIN_STEPS)]
    assert res['train_throughput'] > 0 and res['train_peak_memory_kib'] > 0


def test_quiet_wait_is_skipped_ends_when_quiet_and_gives_up(monkeypatch, capsys):
    shares = []

    def fake_share(seconds, own_pids):
        assert own_pids == [1, 2]
        return shares.pop(0) if shares else 1.0

    monkeypatch.setattr(harness, 'foreign_cpu_share', fake_share)
    shares[:] = [0.5]
    harness._wait_for_quiet(0.1, 0, [1, 2])
    assert shares == [0.5]  # max_wait 0: not even measured
    shares[:] = [0.5, 0.3, 0.05, 0.9]
    harness._wait_for_quiet(0.1, 5, [1, 2])
    assert shares == [0.9]  # stopped at the first quiet second
    assert 'measuring anyway' not in capsys.readouterr().err
    harness._wait_for_quiet(0.1, 0.05, [1, 2])  # never quiet
    assert 'measuring anyway' in capsys.readouterr().err


class _FakeWorker:
    """Stands for a worker subprocess: answers ``run`` with the next of its scripted shares."""

    instances = {}
    shares = {}
    log = []

    def __init__(self, framework, size, weights, threads, train=False, variant=None):
        self.name = variant or framework
        assert os.path.exists(weights)
        self.proc = type('Proc', (), {'pid': 1000 + len(self.instances)})()
        self.closed = None
        self.instances[self.name] = self

    def read(self):
        return dict(ready=True, load_s=0.0, rss_loaded_kib=1024, threads=1)

    def ask(self, cmd):
        self.log.append((self.name, cmd))
        foreign = self.shares[self.name].pop(0) if cmd == 'run' else 0.0
        return dict(prefill_latency=1.0, decode_throughput=1.0, batch8_throughput=1.0,
                    train_throughput=1.0, seconds=0.0, foreign_cpu=foreign)

    def close(self, clean=True):
        self.closed = clean


@pytest.fixture
def fake_workers(monkeypatch):
    _FakeWorker.instances, _FakeWorker.shares, _FakeWorker.log = {}, {}, []
    monkeypatch.setattr(harness, 'Worker', _FakeWorker)
    monkeypatch.setattr(harness, 'make_weights', lambda size, path: Path(path).touch())
    return _FakeWorker


def test_measure_interleaves_and_redoes_disturbed_runs(fake_workers, tmp_path):
    fake_workers.shares = {'mmllava': [0.5, 0.05, 0.0], 'transformers': [0.9, 0.8, 0.7, 0.0]}
    runs = harness._measure('tiny', 2, 1, str(tmp_path), retries=2, max_foreign=0.1,
                            max_wait=0)
    runs_asked = [name for name, cmd in fake_workers.log if cmd == 'run']
    assert [c for _, c in fake_workers.log[:2]] == ['warmup', 'warmup']
    # Round 1: mmllava redone once; transformers disturbed every time, the third attempt
    # counts. Round 2: one run each.
    assert runs_asked == ['mmllava'] * 2 + ['transformers'] * 3 + ['mmllava', 'transformers']
    assert [r['foreign_cpu'] for r in runs['mmllava']] == [0.05, 0.0]
    assert [r['foreign_cpu'] for r in runs['transformers']] == [0.7, 0.0]
    assert all(w.closed is True for w in fake_workers.instances.values())
    assert list(tmp_path.iterdir()) == []  # the weights are removed once loaded


def test_measure_runs_quant_variants_and_stops_workers_on_error(fake_workers, tmp_path):
    fake_workers.shares = {'fp32': [0.0], 'bf16': [], 'int8': [0.0],  # bf16 fails
                          'decode-bf16': [0.0], 'decode-int8': [0.0]}
    with pytest.raises(IndexError):
        harness._measure('tiny', 1, 1, str(tmp_path), 0, 0.1, 0, variants=specs.QUANT_VARIANTS)
    assert set(fake_workers.instances) == set(specs.QUANT_VARIANTS)
    # Stopped without waiting for them (they may be mid-run).
    assert all(w.closed is False for w in fake_workers.instances.values())


# ---------------------------------------------------------------------- report
def _inference_run(value, ids, foreign=0.0, peak_kib=4096, loaded_kib=1024):
    return dict(prefill_latency=value, decode_throughput=value, batch8_throughput=value,
                peak_memory_kib=peak_kib, rss_loaded_kib=loaded_kib, single_ids=[ids[:2]],
                batch_ids=[ids[2:]], foreign_cpu=foreign, model_bytes=2**20 * value,
                bytes_per_token=10)


def test_bench_size_ratios_mean_mmllava_better_and_outputs_are_compared(monkeypatch):
    ids = [1, 2, 3, 4, 5, 6, 7, 8]
    runs = {'mmllava': [_inference_run(v, ids) for v in (10, 20, 30)],
            'transformers': [_inference_run(v, ids[:-1] + [0], foreign=0.2,
                                            peak_kib=8192) for v in (40, 50, 60)]}
    monkeypatch.setattr(report, '_measure', lambda *args: runs)
    monkeypatch.setattr(report, 'read_bandwidth', lambda threads: 1000.0)
    rows = {r['metric']: r for r in report.bench_size('tiny', 3, 2, 'unused')}
    assert list(rows) == [m for m, _, _ in specs.METRICS] + ['decode_floor_ratio']
    # 10 bytes a token at 1000 bytes/s: a floor of 100 tokens/s; 20 and 50 tokens/s decode.
    floor = rows['decode_floor_ratio']
    assert (floor['mmllava'], floor['transformers'], floor['ratio']) == (5.0, 2.0, 0.4)
    assert floor['read_bandwidth_gbps'] == 0.0
    # Medians 20 (mmllava) and 50: latency lower is better, throughput higher.
    assert rows['prefill_latency']['ratio'] == 2.5
    assert rows['decode_throughput']['ratio'] == 0.4
    assert rows['peak_memory']['mmllava'] == 4.0 and rows['peak_memory']['transformers'] == 8.0
    assert rows['peak_memory_over_weights']['mmllava'] == 3.0
    row = rows['prefill_latency']
    assert row['outputs_equal'] is False and row['token_agreement'] == round(21 / 24, 4)
    assert (row['size'], row['dtype'], row['threads'], row['repeats']) == ('tiny', 'float32', 2, 3)
    assert row['max_foreign_cpu'] == 0.2


def test_rows_ratio_of_a_zero_cost_is_infinite():
    runs = {fw: [dict(peak_memory=v, foreign_cpu=0.0)] for fw, v in
            (('mmllava', 0.0), ('transformers', 5.0))}
    (row, ) = report._rows('tiny', runs, [('peak_memory', 'MiB', False)], True, 1.0, 1, 1)
    assert row['ratio'] == float('inf')


def test_bench_train_compares_losses_and_never_redoes_runs(monkeypatch):
    calls = []

    def fake_measure(*args, **kwargs):
        calls.append((args, kwargs))
        run = dict(train_throughput=4.0, train_peak_memory_kib=2048, foreign_cpu=0.0)
        return {'mmllava': [dict(run, losses=[7.0, 6.5, 6.0])],
                'transformers': [dict(run, losses=[7.0, 6.50005, 6.01])]}

    monkeypatch.setattr(report, '_measure', fake_measure)
    rows = report.bench_train('tiny', 1, 1, 'unused', retries=5)
    assert calls[0][0][4] == 0 and calls[0][1] == dict(train=True)  # retries 0
    assert [r['metric'] for r in rows] == [m for m, _, _ in specs.TRAIN_METRICS]
    assert rows[0]['ratio'] == 1.0 and rows[1]['mmllava'] == 2.0
    # 1e-4 tolerance: the first two steps agree, the third does not.
    assert rows[0]['outputs_equal'] is False and rows[0]['token_agreement'] == round(2 / 3, 4)


def test_bench_quant_compares_each_variant_with_fp32(monkeypatch):
    ids = [1, 2, 3, 4, 5, 6]
    runs = {'fp32': [_inference_run(10, ids)], 'bf16': [_inference_run(5, ids)],
            'int8': [_inference_run(20, ids[:-1] + [0])]}
    monkeypatch.setattr(report, '_measure', lambda *args, **kwargs: runs)
    rows = {(r['variant'], r['metric']): r for r in report.bench_quant('tiny', 1, 1, 'unused')}
    assert {m for _, m in rows} == {m for m, _, _ in specs.QUANT_METRICS}
    assert rows['fp32', 'prefill_latency']['ratio'] == 1.0
    assert rows['bf16', 'prefill_latency']['ratio'] == 2.0  # half the latency
    assert rows['bf16', 'model_memory']['value'] == 5.0
    assert rows['int8', 'decode_throughput']['ratio'] == 2.0
    assert rows['bf16', 'prefill_latency']['answer_agreement'] == 1.0
    # int8's one differing token spoils one of its 2 answers (single and batch row).
    assert rows['int8', 'prefill_latency']['answer_agreement'] == 0.5
    assert rows['int8', 'prefill_latency']['token_agreement'] == round(5 / 6, 4)


def test_markdown_tables():
    row = dict(size='tiny', dtype='float32', metric='prefill_latency', unit='ms', mmllava=1.0,
               transformers=2.0, ratio=2.0, outputs_equal=False, token_agreement=0.75)
    assert report.markdown_table([row]).splitlines() == [
        '| size | dtype | metric | unit | mmllava | transformers | ratio | outputs equal |',
        '|---|---|---|---|---:|---:|---:|---|',
        '| tiny | float32 | prefill_latency | ms | 1.00 | 2.00 | 2.00 | no (75.0% of tokens) |']
    quant = [dict(size='tiny', variant=v, metric='prefill_latency', unit='ms', value=x,
                  ratio=r, answer_agreement=a, token_agreement=a)
             for v, x, r, a in (('fp32', 2.0, 1.0, 1.0), ('int8', 1.0, 2.0, 0.5))]
    assert report.quant_table(quant).splitlines() == [
        '| size | metric | unit | fp32 | int8 | int8/fp32 |', '|---|---|---|---:|---:|---:|',
        '| tiny | prefill_latency | ms | 2.00 | 1.00 | 2.00 |', '',
        '- tiny int8: greedy answers equal to fp32 on 50% of prompts, 50.0% of tokens']


# ---------------------------------------------------------------------- CLI
@pytest.mark.parametrize('flags, expected', [
    ([], ['size tiny', 'size 1b']),
    (['--train', '--quant'], ['size tiny', 'train tiny', 'quant tiny', 'size 1b', 'quant 1b']),
    (['--only-train'], ['train tiny']),
    (['--only-quant', '--train'], ['quant tiny', 'quant 1b']),
])
def test_main_runs_the_benchmarks_the_flags_ask_for(monkeypatch, tmp_path, capsys, flags,
                                                    expected):
    calls = []

    def fake(kind):
        def bench_fn(size, repeats, threads, tmpdir, retries, max_foreign, max_wait):
            calls.append(f'{kind} {size}')
            assert (repeats, threads, retries, max_foreign, max_wait) == (2, 1, 3, 0.25, 0.0)
            row = dict(size=size, dtype='float32', metric=kind, unit='ms', mmllava=1.0,
                       transformers=1.0, ratio=1.0, outputs_equal=True, token_agreement=1.0)
            if kind == 'quant':
                row = dict(size=size, variant='fp32', metric='prefill_latency', unit='ms',
                           value=1.0, ratio=1.0, answer_agreement=1.0, token_agreement=1.0)
            return [row]
        return bench_fn

    for kind in ('size', 'train', 'quant'):
        monkeypatch.setattr(bench, f'bench_{kind}', fake(kind))
    out = tmp_path / 'rows.json'
    handler = signal.getsignal(signal.SIGTERM)
    try:
        rows = bench.main(['--sizes', 'tiny', '1b', '--repeats', '2', '--threads', '1',
                           '--retries', '3', '--max-foreign-cpu', '0.25', '--max-wait', '0',
                           '--out', str(out)] + flags)
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert calls == expected
    assert json.loads(out.read_text()) == rows and len(rows) == len(expected)
    stdout = capsys.readouterr().out
    assert ('| size | dtype | metric |' in stdout) == any(not c.startswith('quant')
                                                          for c in expected)
    assert ('| size | metric | unit | fp32 |' in stdout) == any(c.startswith('quant')
                                                               for c in expected)


def test_main_refuses_no_repeats(capsys):
    handler = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as info:
            bench.main(['--repeats', '0', '--threads', '1'])
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert info.value.code == 2 and '--repeats must be at least 1' in capsys.readouterr().err


# ---------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_benchmark_tiny(tmp_path):
    out = tmp_path / 'bench.json'
    # No retries: a busy CI machine must not make the test slow.
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), '--sizes', 'tiny', '--repeats', '1', '--threads', '1',
         '--retries', '0', '--max-wait', '0', '--train', '--out', str(out)],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert sorted(r['metric'] for r in rows) == sorted(METRICS | TRAIN_METRICS)
    for row in rows:
        assert row['size'] == 'tiny' and row['dtype'] == 'float32'
        assert isinstance(row['unit'], str) and row['unit']
        for key in ('mmllava', 'transformers', 'ratio'):
            assert isinstance(row[key], (int, float)) and row[key] >= 0, (key, row)
        # Same weights, same inputs, fp32: greedy ids must match token for token, and the
        # training losses step for step.
        assert row['outputs_equal'] is True and row['token_agreement'] == 1.0
    # The markdown table goes to stdout, a line per row.
    lines = proc.stdout.splitlines()
    assert lines[0].startswith('| size | dtype | metric |')
    assert sum(line.startswith('| tiny |') for line in lines) == len(rows)
