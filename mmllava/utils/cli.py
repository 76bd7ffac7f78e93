"""What every tool and demo shares on its command line: one-line errors and the model options.

A base module that imports nothing heavy, so that ``--help`` answers at once. A tool builds its
parser with :func:`make_parser` and ends with ``run_cli(main)``:

- a bad argument prints ``error: bad argument (<tool>): <why>`` and exits 2;
- a bad input (a missing or unreadable file, a wrong value: ``OSError``, ``ValueError``,
  ``TypeError``, ``KeyError``, ``ImportError``) prints ``error: <what> (<file>): <why>`` on one
  line and exits 1;
- ``--debug`` or ``MMLLAVA_DEBUG=1`` lets the exception through, with its traceback;
- Ctrl-C exits 130 without a traceback.
Other exceptions (bugs) keep their traceback.
"""
import argparse
import os
import sys
from typing import Callable, Optional, Sequence

#: Exceptions that mean the input is wrong, not the code: one line, exit status 1.
INPUT_ERRORS = (OSError, ValueError, TypeError, KeyError, ImportError)

_WHAT = ((FileNotFoundError, 'file not found'), (IsADirectoryError, 'not a file'),
         (PermissionError, 'permission denied'), (ImportError, 'missing dependency'),
         (OSError, 'cannot read input'), (KeyError, 'missing key'), (TypeError, 'wrong type'),
         (ValueError, 'bad input'))


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit status 2),
    ``error: bad argument (<tool>): <why>``, instead of the usage text and the error."""

    def error(self, message: str):
        self.exit(2, f'error: bad argument ({self.prog}): {message} (see --help)\n')


def make_parser(description: Optional[str] = None, **kwargs) -> OneLineArgumentParser:
    """A tool's parser: one-line usage errors and a ``--debug`` flag (tracebacks shown)."""
    parser = OneLineArgumentParser(description=description, **kwargs)
    parser.add_argument('--debug', action='store_true',
                        help='show the traceback of an error (also: MMLLAVA_DEBUG=1)')
    return parser


def _debugging(argv: Sequence[str]) -> bool:
    return '--debug' in argv or os.environ.get('MMLLAVA_DEBUG', '') not in ('', '0')


def error_line(error: BaseException, tool: str) -> str:
    """``error: <what> (<file>): <why>`` for an exception, on one line.

    ``<file>`` is the file the error names (``OSError.filename``) or else the tool;
    ``<why>`` the message with its line breaks folded.
    """
    what = next((w for cls, w in _WHAT if isinstance(error, cls)), type(error).__name__)
    filename = getattr(error, 'filename', None)
    if isinstance(error, OSError) and error.strerror:
        why = error.strerror
    elif isinstance(error, KeyError) and len(error.args) == 1:
        why = str(error.args[0])
    else:
        why = str(error) or type(error).__name__
    why = ' '.join(why.split())
    return f'error: {what} ({filename or tool}): {why}'


def run_cli(main: Callable[[], Optional[int]], argv: Optional[Sequence[str]] = None,
            tool: Optional[str] = None) -> None:
    """Run a tool's ``main`` and exit with its status; input errors end in one line.

    Args:
        main: The tool's entry point (it parses ``sys.argv`` itself); an int it returns is the
            exit status (anything else, such as ``tools/test.py``'s metrics: 0).
        argv (Sequence[str], optional): The arguments to look for ``--debug`` in;
            ``sys.argv[1:]`` by default.
        tool (str, optional): The name errors give when they name no file; the script's
            path by default.
    """
    argv = sys.argv[1:] if argv is None else argv
    if tool is None:
        tool = os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0] else 'mmllava'
    try:
        status = main()
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)
    except INPUT_ERRORS as e:
        if _debugging(argv):
            raise
        print(error_line(e, tool), file=sys.stderr)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)


def check_device(device: str) -> None:
    """Refuse a device this machine lacks before a model is loaded onto it.

    Raises:
        ValueError: ``cuda`` without a CUDA GPU (or an index past the last), ``mps`` without
            Metal, or a string torch does not read as a device.
    """
    import torch  # only once arguments are parsed: --help stays fast
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f'--device {device!r} is not a device torch knows: {e}') from None
    if dev.type == 'cuda':
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f'--device {device}: this machine has no CUDA GPU '
                             '(use --device cpu)')
        if dev.index is not None and dev.index >= count:
            raise ValueError(f'--device {device}: this machine has {count} CUDA GPU(s), '
                             f'cuda:0 to cuda:{count - 1}')
    elif dev.type == 'mps' and not torch.backends.mps.is_available():
        raise ValueError(f'--device {device}: Metal (mps) is not available here')


def add_cfg_options(parser) -> None:
    """Add ``--cfg-options KEY=VALUE ...``, kept as strings: mmengine (whose ``DictAction``
    reads them, in :func:`parse_cfg_options`) is imported only once the arguments are parsed."""
    parser.add_argument('--cfg-options', nargs='+', metavar='KEY=VALUE', default=None,
                        help='override config keys, e.g. test_dataloader.batch_size=8 '
                        '(values as mmengine reads them: lists "[a,b]", tuples "(a,b)")')


def parse_cfg_options(values: Optional[Sequence[str]]) -> Optional[dict]:
    """``--cfg-options`` strings as the dict mmengine's ``DictAction`` makes of them."""
    if values is None:
        return None
    from mmengine.config import DictAction
    namespace = argparse.Namespace()
    DictAction(option_strings=['--cfg-options'], dest='cfg_options')(None, namespace, values)
    return namespace.cfg_options


def add_model_arguments(parser) -> None:
    """Add the MODEL argument and the options :func:`mmllava.apis.load_model` takes
    (``--checkpoint``, ``--device``, ``--load-8bit``, ``--decoder``, ``--decode-dtype``)
    to a demo's or the server's parser."""
    parser.add_argument('model', help='a zoo name (see mmllava.apis.list_models) or a config file')
    parser.add_argument('--checkpoint', default=None,
                        help='weights file for a config (zoo names load their own weights)')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument('--load-8bit', action='store_true',
                        help="dynamic int8 of the LLM's linear layers (CPU only)")
    parser.add_argument('--decoder', choices=('mmllava', 'transformers'), default=None,
                        help="generation loop: mmllava's own (default) or transformers' "
                        'generate (beam search always uses it)')
    parser.add_argument('--decode-dtype', choices=('float32', 'bfloat16', 'int8'), default=None,
                        help='decode steps multiply with bf16 (+50%% of the fp32 LLM\'s '
                        'memory) or int8 (+25%%; fast with VNNI) copies of the LLM weights; '
                        'prefill and vision stay float32')
