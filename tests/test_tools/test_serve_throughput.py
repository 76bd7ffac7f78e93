"""tools/analysis_tools/serve_throughput.py, short: 4 clients against a batching server get
the answers each request gets alone, and the row counts what they were sent."""
import pytest
from fixtures_llava import load_tool_module


@pytest.mark.slow
def test_four_clients_batched_answer_as_alone():
    tool = load_tool_module('tools/analysis_tools/serve_throughput')
    rows = tool.run('configs/llava/llava-tiny_vqa.py', batches=(4, ), clients=(4, ),
                    seconds=3, max_tokens=8, log=lambda _: None)
    (row, ) = rows
    assert row['max_batch'] == 4 and row['clients'] == 4
    assert row['wrong_answers'] == 0, row
    assert row['requests'] >= 4 and row['tokens_per_s'] > 0
    assert 0 < row['ttft_p50_s'] <= row['ttft_p99_s']
