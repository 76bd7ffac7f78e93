"""Convert an mmllava LLaVA (config + weights) to a llava-hf folder for transformers.

Example::

    python tools/model_converters/mmllava_to_hf.py checkpoints/llava-7b/config.py \\
        checkpoints/llava-7b/model.safetensors llava-7b-hf/

Then ``LlavaForConditionalGeneration.from_pretrained('llava-7b-hf')`` and
``AutoProcessor.from_pretrained('llava-7b-hf')`` work offline.
"""
from mmllava.utils.cli import make_parser, run_cli


def parse_args(argv=None):
    parser = make_parser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='mmllava config file')
    parser.add_argument('weights', help='mmllava weights (model.safetensors or a folder)')
    parser.add_argument('out_dir', help='output folder')
    parser.add_argument('--tokenizer', help='tokenizer folder or tokenizer.model (default: the '
                        "config's, else the weights' folder)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmllava.convert import export_to_hf
    export_to_hf(args.config, args.weights, args.out_dir, tokenizer=args.tokenizer)


if __name__ == '__main__':
    run_cli(main)
