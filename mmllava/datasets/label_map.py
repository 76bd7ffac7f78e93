"""Label maps: class names, one a line, and the names a language model reads and writes.

One reader for every part that meets a label map (datasets, the model's ranking, the metric,
``tools/dataset_converters/action_to_llava.py``), so that they agree on label ``i`` and on its
text. mmaction2's label maps name classes as identifiers (UCF101's ``ApplyEyeMakeup``,
HMDB51's ``brush_hair``); an LLM should read and answer ``apply eye makeup`` and
``brush hair`` instead, the words its pretraining knows. :func:`readable_class_name` makes
them; label ids never change.
"""
import os.path as osp
import re
from typing import List

# A lower-case letter or digit followed by a capital, or a capital followed by a capital and
# a lower-case letter ("TVShow" -> "TV Show"): where camel case starts a word.
_CAMEL = re.compile(r'(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])')


def readable_class_name(name: str) -> str:
    """The words of a class name.

    A name written as an identifier (no space: ``ApplyEyeMakeup``, ``brush_hair``,
    ``YoYo``) is split at underscores and camel-case boundaries, and lower-cased:
    ``apply eye makeup``, ``brush hair``, ``yo yo``. A name that already holds spaces
    (Kinetics-400's ``air drumming``, ``passing American football (in game)``, MoCap-Actions'
    ``walking backward``) is kept as it is, inner whitespace collapsed.

    Args:
        name (str): A label map's class name.

    Returns:
        str: The name as words.
    """
    name = ' '.join(name.split())
    if ' ' in name:
        return name
    words = _CAMEL.sub(' ', name.replace('_', ' '))
    return ' '.join(words.split()).lower()


def read_text_lines(path: str, what: str) -> List[str]:
    """The lines of a UTF-8 text file (a list or a label map), split at ``\\n``, ``\\r\\n`` and
    ``\\r`` only, so that line numbers are those an editor shows.

    Raises:
        ValueError: the file is not UTF-8, named with the byte that is not.
    """
    try:
        with open(path, encoding='utf-8') as f:
            return f.read().split('\n')  # text mode made \r\n and \r into \n
    except UnicodeDecodeError as e:
        raise ValueError(f'{path}: the {what} is not UTF-8 text (byte {e.start})') from None


def read_label_map(path: str, readable: bool = True) -> List[str]:
    """Class names of a label map file: line ``i`` (from 0) names label ``i``.

    Args:
        path (str): The file (mmaction2's ``label_map.txt`` format).
        readable (bool): Return :func:`readable_class_name` of each name (the default, what
            prompts, answers, ranking and metrics use); ``False`` gives the names as written.

    Returns:
        list[str]: The class names.

    Raises:
        FileNotFoundError: No such file.
        ValueError: An empty file, a blank line between names (it would shift every later
            label), or a class given twice (the answers could not tell them apart), named by
            ``file:line``.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'label map not found: {path!r}')
    lines = read_text_lines(path, 'label map')
    while lines and not lines[-1].strip():  # a trailing newline or two is fine
        lines.pop()
    if not lines:
        raise ValueError(f'{path}: the label map is empty (one class name a line expected)')
    names, seen = [], {}
    for number, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            raise ValueError(f'{path}:{number}: blank line in the label map (line i names '
                             'label i - 1, so a gap would shift every later label)')
        if readable:
            name = readable_class_name(name)
        if name in seen:
            raise ValueError(f'{path}:{number}: class {name!r} is listed twice (first on line '
                             f'{seen[name]})')
        seen[name] = number
        names.append(name)
    return names
