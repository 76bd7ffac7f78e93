"""Render the tiny LLaVA data set: coloured shapes with captions and Q&A (LLaVA JSON).

    python tools/dataset_converters/make_tiny_llava_data.py --out data/tiny_llava \\
        [--num 200] [--seed 0]

Writes ``OUT/images/*.png``, ``OUT/pretrain.json`` and ``OUT/finetune.json`` (see
:mod:`mmllava.datasets.synthetic`). The tiny configs render the same files on first use, so
running this is only needed for another size, seed or place.
"""
from typing import List, Optional

from mmllava.utils.cli import make_parser, run_cli


def main(argv: Optional[List[str]] = None) -> int:
    parser = make_parser(description='Render the tiny LLaVA data set.')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--num', type=int, default=200, help='number of images')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error(f'--num must be at least 1, got {args.num}')
    from mmllava.datasets.synthetic import make_tiny_llava_data
    counts = make_tiny_llava_data(args.out, num=args.num, seed=args.seed)
    print(f'Wrote {args.out}: ' + ', '.join(f'{k} {v}' for k, v in counts.items()))
    return 0


if __name__ == '__main__':
    run_cli(main)
