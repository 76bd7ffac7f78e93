"""The benchmark tool runs end to end on the tiny size (no timing assertions)."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / 'tools' / 'analysis_tools' / 'benchmark.py'
METRICS = {'prefill_latency', 'decode_throughput', 'batch8_throughput', 'peak_memory',
           'peak_memory_over_weights'}


TRAIN_METRICS = {'train_throughput', 'train_peak_memory'}


def test_benchmark_tiny(tmp_path):
    out = tmp_path / 'bench.json'
    # No retries: a busy CI machine must not make the test slow.
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), '--sizes', 'tiny', '--repeats', '1', '--threads', '1',
         '--retries', '0', '--max-wait', '0', '--train', '--out', str(out)],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert {r['metric'] for r in rows} == METRICS | TRAIN_METRICS
    for row in rows:
        assert row['size'] == 'tiny' and row['dtype'] == 'float32'
        assert isinstance(row['unit'], str) and row['unit']
        for key in ('mmllava', 'transformers', 'ratio'):
            assert isinstance(row[key], (int, float)) and row[key] >= 0, (key, row)
        # Same weights, same inputs, fp32: greedy ids must match token for token, and the
        # training losses step for step.
        assert row['outputs_equal'] is True and row['token_agreement'] == 1.0
    # The markdown table goes to stdout.
    assert '| size | dtype | metric |' in proc.stdout
