"""Train a small LLaMA-like sentencepiece tokenizer offline, deterministically.

With no ``--text`` it trains on a built-in English corpus (the chat templates' system prompts,
sentences about people, actions and images made from word lists, digits and punctuation), so
the same command always gives the same ``tokenizer.model``. The repo's
``resources/tiny-tokenizer/tokenizer.model`` is made this way (see the README there).

Example::

    python tools/misc/train_tokenizer.py --out resources/tiny-tokenizer --vocab-size 1000

``--llava-json`` trains on a dataset's own text instead: every turn of LLaVA instruction JSON
files (``<image>``/``<video>`` dropped) plus the ``--template``'s system prompt and role tags,
as the MoCap-Actions model's tokenizer is made::

    python tools/misc/train_tokenizer.py --out resources/llava-tiny_mocap-actions \
        --vocab-size 320 --llava-json data/mocap_actions/train_llava.json --template vicuna_v1
"""
import itertools
import json
import os.path as osp
from typing import List, Sequence

from mmllava.utils.cli import make_parser, run_cli

SUBJECTS = ['a man', 'a woman', 'the boy', 'the girl', 'two people', 'an old man', 'a child',
            'the person', 'a dancer', 'the athlete', 'a group of friends', 'the player',
            'a young woman', 'the runner', 'a dog', 'the cat']
ACTIONS = ['walking', 'running', 'jumping', 'punching', 'kicking', 'doing a cartwheel',
           'crawling', 'rolling on the floor', 'spinning', 'doing a spin kick',
           'doing a backflip', 'dancing', 'getting up from the ground', 'sitting', 'standing',
           'waving', 'climbing', 'swimming', 'riding a bike', 'throwing a ball',
           'catching a frisbee', 'reading a book', 'eating lunch', 'playing guitar']
PLACES = ['in a park', 'on the street', 'at the beach', 'in a room', 'on a stage',
          'near a red car', 'in the kitchen', 'on a green field', 'under a tree',
          'next to a white wall', 'in front of a house', 'on the grass']
QUESTIONS = ['What is the person doing?', 'What action is shown in the video?',
             'Describe the image concisely.', 'What color is the car?',
             'How many people are in the picture?', 'Where is this happening?',
             'Is the man running or walking?', 'What is in the image?',
             'Which action is performed?', 'Describe the motion in detail.',
             "What is the dog holding in its mouth?", 'Why is the woman smiling?']
PROMPTS = ['Answer the question using a single word or phrase.',
           "Answer with the option's letter from the given choices directly.",
           'A. walk B. run C. jump D. kick', 'Options: (A) dance (B) crawl (C) roll (D) spin',
           'USER: ASSISTANT: Human: Assistant: [INST] [/INST] <<SYS>> <</SYS>>',
           '<|im_start|>user <|im_start|>assistant <|im_end|>', 'Yes.', 'No.', 'Maybe.']
COLORS = ['red', 'blue', 'green', 'yellow', 'black', 'white', 'orange', 'purple', 'brown']
OBJECTS = ['car', 'ball', 'shirt', 'hat', 'bag', 'umbrella', 'chair', 'kite', 'bottle']


def builtin_corpus() -> List[str]:
    """The built-in training text: deterministic, a few thousand short lines."""
    from mmllava.conversation import BUILTIN_TEMPLATES
    lines = list(dict.fromkeys(t.system for t in BUILTIN_TEMPLATES if t.system))  # each once
    lines += PROMPTS + QUESTIONS
    for i, (subject, action, place) in enumerate(itertools.product(SUBJECTS, ACTIONS, PLACES)):
        if i % 3 == 0:  # a third of the combinations is plenty and keeps training fast
            lines.append(f'{subject[0].upper()}{subject[1:]} is {action} {place}.')
    for subject, action in itertools.product(SUBJECTS, ACTIONS):
        lines.append(f'The video shows {subject} {action}.')
    for color, obj in itertools.product(COLORS, OBJECTS):
        lines.append(f'There is a {color} {obj} in the picture, and it looks new!')
    for n in range(0, 1000, 7):
        lines.append(f'There are {n} frames, {n % 60} seconds; score {n / 10:.1f}% (#{n}).')
    lines.append('0 1 2 3 4 5 6 7 8 9 . , ; : ! ? \' " ( ) [ ] { } < > / \\ - _ + = * & % $ #'
                 ' @ ^ ~ ` |')
    return lines


def llava_json_corpus(files: Sequence[str], template: str) -> List[str]:
    """The text of LLaVA instruction JSON files and of a template's prompt, one line each.

    Every distinct turn value (visual placeholders removed) and one rendered prompt of the
    template (system prompt and role tags), so the tokenizer covers all the text it will see.
    """
    from mmllava.conversation import VISUAL_PLACEHOLDERS, build_prompt
    lines = []
    for path in files:
        with open(path, encoding='utf-8') as f:
            samples = json.load(f)
        for i, sample in enumerate(samples):
            if not isinstance(sample, dict) or 'conversations' not in sample:
                raise ValueError(f'{path}: sample {i} has no "conversations"')
            for turn in sample['conversations']:
                text = str(turn['value'])
                for placeholder in VISUAL_PLACEHOLDERS:
                    text = text.replace(placeholder, '')
                lines.append(text.strip())
    lines = sorted(set(line for line in lines if line))
    if not lines:
        raise ValueError(f'No text in {list(files)}')
    lines.append(build_prompt([dict(role='user', content='x'), dict(role='assistant',
                                                                     content='y')],
                              template, add_generation_prompt=False))
    return lines


def parse_args(argv=None):
    parser = make_parser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True, help='output directory for tokenizer.model')
    parser.add_argument('--vocab-size', type=int, default=1000)
    parser.add_argument('--text', nargs='*', default=[],
                        help='text files to train on (default: the built-in corpus)')
    parser.add_argument('--llava-json', nargs='*', default=[],
                        help='LLaVA instruction JSON files to train on (with --template)')
    parser.add_argument('--template', default='vicuna_v1',
                        help='template whose prompt text joins --llava-json text')
    parser.add_argument('--model-type', default='bpe', choices=['bpe', 'unigram'])
    parser.add_argument('--no-chatml-tokens', action='store_true',
                        help='leave out the <|im_start|> and <|im_end|> pieces')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmllava.conversation import train_sentencepiece
    texts = []
    for path in args.text:
        with open(path, encoding='utf-8') as f:
            texts.append(f.read())
    if args.llava_json:
        texts += llava_json_corpus(args.llava_json, args.template)
    if not texts:
        texts = builtin_corpus()
    symbols = [] if args.no_chatml_tokens else ['<|im_start|>', '<|im_end|>']
    path = train_sentencepiece(texts, args.out, args.vocab_size, model_type=args.model_type,
                               user_defined_symbols=symbols)
    print(f'Wrote {path} ({osp.getsize(path)} bytes)')


if __name__ == '__main__':
    run_cli(main)
