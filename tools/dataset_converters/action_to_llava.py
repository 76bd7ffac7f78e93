"""Write LLaVA instruction JSON from an mmaction2 action list and its label map.

    python tools/dataset_converters/action_to_llava.py LIST LABEL_MAP OUT_JSON \\
        [--format {videos,rawframes,images}] [--question-mode {closed,open}] \\
        [--question TEXT] [--data-prefix PREFIX]

Examples::

    # UCF101 split 1 (mmaction2's tools/data/ucf101 layout), closed-set question
    python tools/dataset_converters/action_to_llava.py \\
        data/ucf101/ucf101_train_split_1_videos.txt data/ucf101/label_map.txt \\
        data/ucf101/ucf101_train_split_1_llava.json
    # Kinetics-400 rawframes, the open question (400 classes are too many to list)
    python tools/dataset_converters/action_to_llava.py \\
        data/kinetics400/kinetics400_train_list_rawframes.txt \\
        data/kinetics400/label_map.txt data/kinetics400/train_llava.json \\
        --format rawframes --question-mode open
    # Stanford40 still images
    python tools/dataset_converters/action_to_llava.py data/stanford40/train_list.txt \\
        data/stanford40/label_map.txt data/stanford40/train_llava.json --format images

Arguments and options:

- ``LIST``: the list, one sample a line: ``path label`` (``videos``, ``images``) or
  ``dir total_frames label`` (``rawframes``).
- ``LABEL_MAP``: one class name a line; line ``i`` (from 0) names label ``i``. Identifier
  names are written as words (``ApplyEyeMakeup`` -> ``apply eye makeup``, ``brush_hair`` ->
  ``brush hair``; ``--raw-class-names`` keeps them), as the datasets, the model and the metric
  read them.
- ``OUT_JSON``: the JSON written (its folder is created).
- ``--format``: the list format, ``videos`` (default), ``rawframes`` or ``images``.
- ``--question-mode``: ``closed`` (default) lists every class after the question, the answer
  being one of them; ``open`` asks the question alone.
- ``--question``: the question (default ``'What is the person doing?'``); in closed mode the
  class list is appended to it.
- ``--data-prefix``: joined in front of every path of the list, so that the JSON's paths are
  relative to the ``img_prefix`` the training config gives (default: none, the paths as in
  the list).

Each record, as the MoCap-Actions renderer writes them::

    {"id": "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01",
     "video": "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",   # "image" for --format images
     "total_frames": 121,                                        # rawframes only
     "conversations": [{"from": "human", "value": "<video>\\nWhat is the person doing? ..."},
                       {"from": "gpt", "value": "ApplyEyeMakeup"}]}

A malformed line, a label outside the label map or an empty list or label map is an error
that names the file and line; nothing is written then. Files are not opened (the lists of
Kinetics-400 hold 240k clips): ``ActionListDataset`` or ``tools/analysis_tools/
check_dataset.py`` check them.
"""
import argparse
import json
import os
import os.path as osp
from typing import List, Optional

from mmllava.utils.cli import make_parser, run_cli

# mmllava.datasets.action_lists' values, written out so that --help imports nothing heavy
# (tests/test_tools/test_startup.py checks that they agree).
LIST_FORMATS = ('videos', 'rawframes', 'images')
QUESTION_MODES = ('closed', 'open')
OPEN_QUESTION = 'What is the person doing?'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = make_parser(
        description='Write LLaVA instruction JSON from an mmaction2 action list.')
    parser.add_argument('list_file', help='mmaction2 list (videos, rawframes or images)')
    parser.add_argument('label_map', help='label map: one class name a line (identifiers are '
                        'written as words: ApplyEyeMakeup -> "apply eye makeup")')
    parser.add_argument('out', help='output JSON file')
    parser.add_argument('--format', dest='list_format', choices=LIST_FORMATS,
                        default='videos', help='list format (default: videos)')
    parser.add_argument('--question-mode', choices=QUESTION_MODES, default='closed',
                        help='closed: list the classes in the question; open: ask the '
                        'question alone (default: closed)')
    parser.add_argument('--question', default=None,
                        help=f'question text (default: {OPEN_QUESTION!r})')
    parser.add_argument('--data-prefix', default='',
                        help='prefix joined in front of every path of the list')
    parser.add_argument('--raw-class-names', action='store_true',
                        help='write the label map\'s names as they are (ApplyEyeMakeup)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from mmllava.datasets.action_lists import (
        action_question,
        llava_action_sample,
        read_action_list,
    )
    from mmllava.datasets.label_map import read_label_map

    # A missing or malformed list or label map: one line naming the file (run_cli).
    class_names = read_label_map(args.label_map, readable=not args.raw_class_names)
    question = action_question(class_names, args.question_mode, args.question)
    entries = read_action_list(args.list_file, args.list_format, len(class_names),
                               args.label_map)
    samples = [llava_action_sample(e, class_names, question, args.list_format,
                                   args.data_prefix) for e in entries]
    if osp.dirname(args.out):
        os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w', encoding='utf-8') as f:
        json.dump(samples, f, indent=1, ensure_ascii=False)
        f.write('\n')
    print(f'Wrote {len(samples)} samples ({len(class_names)} classes, {args.question_mode} '
          f'question) to {args.out}')
    return 0


if __name__ == '__main__':
    run_cli(main)
