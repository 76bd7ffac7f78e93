"""mmllava.utils.cli: one-line errors, exit statuses, --debug, device checks, --cfg-options."""
import pytest
import torch

from mmllava.apis.inference import print_answer
from mmllava.utils.cli import (
    check_device,
    error_line,
    make_parser,
    parse_cfg_options,
    run_cli,
)


def _exit(main, argv=()):
    with pytest.raises(SystemExit) as info:
        run_cli(main, list(argv), tool='tools/x.py')
    return info.value.code


@pytest.mark.parametrize('error, line', [
    (FileNotFoundError(2, 'No such file or directory', '/data/a.jpg'),
     'error: file not found (/data/a.jpg): No such file or directory'),
    (IsADirectoryError(21, 'Is a directory', '/data'), 'error: not a file (/data): Is a directory'),
    (ValueError('size must be\neven'), 'error: bad input (tools/x.py): size must be even'),
    (KeyError('model'), 'error: missing key (tools/x.py): model'),
    (TypeError('expected a str'), 'error: wrong type (tools/x.py): expected a str'),
    (ImportError('No module named gradio'),
     'error: missing dependency (tools/x.py): No module named gradio'),
])
def test_error_line(error, line):
    assert error_line(error, 'tools/x.py') == line


def test_input_errors_are_one_line_and_exit_1(capsys):
    def main():
        raise FileNotFoundError(2, 'no such image file', 'person.jpg')
    assert _exit(main) == 1
    captured = capsys.readouterr()
    assert captured.err == 'error: file not found (person.jpg): no such image file\n'
    assert captured.out == ''


def test_debug_lets_the_traceback_through(monkeypatch):
    def main():
        raise ValueError('bad')
    with pytest.raises(ValueError, match='bad'):
        run_cli(main, ['--debug'])
    monkeypatch.setenv('MMLLAVA_DEBUG', '1')
    with pytest.raises(ValueError, match='bad'):
        run_cli(main, [])
    monkeypatch.setenv('MMLLAVA_DEBUG', '0')
    assert _exit(main) == 1


def test_bugs_keep_their_traceback_and_status():
    def main():
        raise RuntimeError('a bug')
    with pytest.raises(RuntimeError, match='a bug'):
        run_cli(main, [])
    assert _exit(lambda: 3) == 3
    assert _exit(lambda: None) == 0
    assert _exit(lambda: {'vqa/acc': 50.0}) == 0  # tools/test.py returns its metrics


def test_ctrl_c_is_130_without_traceback(capsys):
    def main():
        raise KeyboardInterrupt
    assert _exit(main) == 130
    assert capsys.readouterr().err == 'interrupted\n'


def test_bad_arguments_are_one_line_and_exit_2(capsys):
    parser = make_parser('a tool', prog='x.py')
    parser.add_argument('--size', type=int)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(['--size', 'big'])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == ("error: bad argument (x.py): argument --size: invalid int value: 'big' "
                   '(see --help)\n')
    assert parser.parse_args(['--debug']).debug


@pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has a GPU')
def test_missing_gpu_is_refused():
    check_device('cpu')
    with pytest.raises(ValueError, match='--device cuda:0: this machine has no CUDA GPU'):
        check_device('cuda:0')
    with pytest.raises(ValueError, match="'gpu0' is not a device torch knows"):
        check_device('gpu0')


def test_load_model_checks_the_device_first():
    from mmllava.apis import load_model
    with pytest.raises(ValueError, match="'tpu:9' is not a device torch knows"):
        load_model('a-model-that-is-not-there', device='tpu:9')


def test_cfg_options_read_as_mmengine_does():
    assert parse_cfg_options(None) is None
    assert parse_cfg_options(['a.b=1', 'c=[1,2]', 'd=x']) == {'a.b': 1, 'c': [1, 2], 'd': 'x'}


def test_print_answer_names_the_class_and_the_text():
    lines = []
    assert print_answer(dict(pred_answer='walking', pred_class='walking'), lines.append) == \
        'walking'
    assert lines == ['answer: walking']
    lines.clear()
    assert print_answer(dict(pred_answer='doing a spin kick', pred_class='dancing'),
                        lines.append) == 'dancing'
    assert lines == ['answer: dancing', 'generated: doing a spin kick']
    lines.clear()
    print_answer(dict(pred_caption='a person walking'), lines.append)
    assert lines == ['answer: a person walking']
