"""Every tool and demo answers ``--help`` at once: nothing heavy is imported before the
arguments are parsed (torch, mmengine, transformers come in only once there is work to do)."""
import importlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(str(p.relative_to(ROOT)) for p in
                 [*ROOT.glob('tools/**/*.py'), *ROOT.glob('demo/*.py')]
                 if "if __name__ == '__main__':" in p.read_text())
HEAVY = ('torch', 'mmengine', 'mmpretrain', 'transformers', 'mmllava.datasets', 'mmllava.apis')
# ``--help`` run as the script runs, then the heavy modules that came in.
PROBE = '''
import runpy, sys
sys.argv = [sys.argv[1], '--help']
try:
    runpy.run_path(sys.argv[0], run_name='__main__')
except SystemExit as e:
    assert e.code in (0, None), e.code
print('heavy imports:', ','.join(m for m in {heavy!r} if m in sys.modules))
'''.format(heavy=HEAVY)


def test_every_script_is_found():
    assert {'tools/serve.py', 'tools/test.py', 'tools/train.py', 'demo/video_demo.py',
            'tools/model_converters/llava_to_mmllava.py'} <= set(SCRIPTS)
    # One-line errors: every script but the benchmark (whose worker processes must not
    # import mmllava at all) ends in run_cli.
    for script in SCRIPTS:
        if not script.endswith('analysis_tools/benchmark.py'):
            assert 'run_cli(main)' in (ROOT / script).read_text(), script


@pytest.mark.parametrize('script', SCRIPTS)
def test_help_is_fast_and_imports_nothing_heavy(script):
    proc = subprocess.run([sys.executable, '-c', PROBE, script], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'usage:' in proc.stdout
    last = proc.stdout.strip().splitlines()[-1]
    assert last == 'heavy imports:', f'{script} --help: {last}'
    best = float('inf')
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run([sys.executable, script, '--help'], capture_output=True, cwd=ROOT,
                       timeout=120, check=True)
        best = min(best, time.perf_counter() - start)
    assert best < 2.0, f'{script} --help took {best:.2f} s'


def _script(relpath):
    spec = importlib.util.spec_from_file_location(Path(relpath).stem, ROOT / relpath)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_names_written_out_for_help_agree_with_the_library():
    from mmllava.datasets import action_lists
    from mmllava.evaluation.offline import metric_names
    assert _script('tools/analysis_tools/eval_predictions.py').METRICS == tuple(metric_names())
    converter = _script('tools/dataset_converters/action_to_llava.py')
    assert converter.LIST_FORMATS == action_lists.LIST_FORMATS
    assert converter.QUESTION_MODES == action_lists.QUESTION_MODES
    assert converter.OPEN_QUESTION == action_lists.OPEN_QUESTION
    render = _script('tools/dataset_converters/render_mocap_actions.py')
    mocap = importlib.import_module('mocap_actions')  # the script put its folder on sys.path
    assert render.RENDERER_NAMES == tuple(sorted(mocap.RENDERERS))
    import mmllava.convert
    for kind in _script('tools/model_converters/base_to_mmllava.py').KINDS:
        assert callable(getattr(mmllava.convert, f'hf_{kind}_to_base'.replace(
            'hf_llm_', 'hf_causal_lm_')))
