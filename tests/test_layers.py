"""Imports follow the data: a module of mmllava imports only from the layers below its own.

Layers, bottom up (docs/design.md): base (``registry``, ``utils``, ``structures``, ``version``)
< ``conversation`` < ``datasets`` < ``models`` < ``evaluation`` < ``engine`` < ``convert`` <
``apis``; tools and demos sit on top. Every import counts, lazy ones inside functions too, with
one exception: ``utils/setup_env.py``, whose job is to import every layer so they register.
Besides the order, models never read datasets or conversation (candidate answers reach the
model as ids), and evaluation never reads models.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'mmllava'
RANK = {'registry': 0, 'utils': 0, 'structures': 0, 'version': 0, 'conversation': 1,
        'datasets': 2, 'models': 3, 'evaluation': 4, 'engine': 5, 'convert': 6, 'apis': 7}
FORBIDDEN = {'models': {'datasets', 'conversation'}, 'evaluation': {'models'}}
EXEMPT = {'utils/setup_env.py'}


def imported_modules(path: Path, root: Path = PACKAGE):
    """(line, absolute module name) of every mmllava import in a file, relative ones resolved."""
    package = ['mmllava', *path.relative_to(root).parent.parts]
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                names = ['.'.join(base + ([node.module] if node.module else []))]
                if not node.module:  # from . import x
                    names = [f'{names[0]}.{a.name}' for a in node.names]
            else:
                names = [node.module or '']
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith('mmllava.'):
                yield node.lineno, name


def layer_of(module: str) -> str:
    return module.split('.')[1].removesuffix('.py')


def violations(root: Path = PACKAGE):
    out = []
    for path in sorted(root.rglob('*.py')):
        rel = path.relative_to(root)
        if len(rel.parts) < 2 or rel.as_posix() in EXEMPT or rel.parts[0].startswith('.'):
            continue  # mmllava/__init__.py imports the base only; .mim holds copies of tools
        own = rel.parts[0]
        for line, module in imported_modules(path, root):
            target = layer_of(module)
            if target == own or target not in RANK:
                continue
            if RANK[target] > RANK[own] or (RANK[target] == RANK[own] and RANK[own] > 0) \
                    or target in FORBIDDEN.get(own, ()):
                out.append(f'mmllava/{rel}:{line}: {own} imports {module}')
    return out


def test_every_layer_is_known():
    layers = {p.name.removesuffix('.py') for p in PACKAGE.iterdir()
              if p.name != '__init__.py' and not p.name.startswith(('.', '_'))}
    assert layers <= set(RANK), f'add {sorted(layers - set(RANK))} to RANK and docs/design.md'


def test_imports_follow_the_layers():
    found = violations()
    assert not found, 'imports against the data\'s way:\n' + '\n'.join(found)


@pytest.mark.parametrize('layer,source,bad', [
    ('datasets', 'from mmllava.models.video import build_frame_pooling\n', True),
    ('datasets', 'def f():\n    from mmllava.evaluation import offline\n', True),
    ('models', 'from mmllava.conversation import build_tokenizer\n', True),
    ('evaluation', 'from mmllava.models import LLaVA\n', True),
    ('evaluation', 'from mmllava.datasets.annotations import read_vqa\n', False),
    ('models', 'from ..structures import IGNORE_INDEX\n', False),
])
def test_the_check_catches_a_leak(tmp_path, layer, source, bad):
    """The rule itself: a leak (lazy too) is found, an import from below is not."""
    (tmp_path / layer).mkdir()
    (tmp_path / layer / 'leak.py').write_text(source)
    found = violations(tmp_path)
    assert bool(found) == bad, found
