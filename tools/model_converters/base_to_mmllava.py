"""Convert the base models of LLaVA training (HF CLIP, HF LLaMA/Vicuna) to mmllava's layout.

The 7B recipes start from ``load_base`` files in mmllava's key layout::

    python tools/model_converters/base_to_mmllava.py clip clip-vit-large-patch14-336/ \\
        checkpoints/clip-vit-large-patch14-336.safetensors
    python tools/model_converters/base_to_mmllava.py llm vicuna-7b-v1.5/ \\
        checkpoints/vicuna-7b-v1.5.safetensors

SRC is a transformers folder (safetensors or .bin, sharded or not) or one weights file. Every
key is mapped (``vision_tower.*`` / ``llm.*``) or the conversion fails naming it.
"""
from mmllava.utils.cli import make_parser, run_cli

KINDS = ('clip', 'llm')  # the converter of each: mmllava.convert.hf_{kind}_to_base


def parse_args(argv=None):
    parser = make_parser(description=__doc__.split('\n')[0])
    parser.add_argument('kind', choices=KINDS,
                        help='clip: an HF CLIPModel/CLIPVisionModel; llm: an HF causal LM')
    parser.add_argument('src', help='transformers folder or weights file')
    parser.add_argument('out', help='output .safetensors file')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmllava.convert import hf_causal_lm_to_base, hf_clip_to_base
    from mmllava.engine.checkpoint import load_weights, save_weights
    convert = dict(clip=hf_clip_to_base, llm=hf_causal_lm_to_base)[args.kind]
    state_dict = convert(load_weights(args.src, progress=True))
    save_weights(state_dict, args.out)
    total = sum(v.numel() for v in state_dict.values())
    print(f'wrote {args.out}: {len(state_dict)} tensors, {total / 1e6:.1f} M parameters')


if __name__ == '__main__':
    run_cli(main)
