"""Convert a LLaVA checkpoint (llava-hf, original LLaVA or mmpretrain) to an mmllava folder.

Examples::

    python tools/model_converters/llava_to_mmllava.py llava-1.5-7b-hf/ checkpoints/llava-7b
    python tools/model_converters/llava_to_mmllava.py llava-v1.5-7b/ out/ \\
        --vision-tower clip-vit-large-patch14-336/
    python tools/model_converters/llava_to_mmllava.py llava-7b-v1.5_liuhaotian.pth out/ \\
        --vision-tower clip-vit-large-patch14-336/ --tokenizer llava-v1.5-7b/

OUT_DIR receives model.safetensors, the tokenizer files and config.py; then
``get_model('OUT_DIR/config.py', pretrained='OUT_DIR/model.safetensors')``.

When OUT_DIR is named after a zoo model (``$MMLLAVA_HOME/llava-7b-v1.5_vqa``), config.py is
written over that model's zoo config (its task, question and pipelines), and
``get_model('llava-7b-v1.5_vqa', pretrained=True)`` builds from it::

    python tools/model_converters/llava_to_mmllava.py llava-1.5-7b-hf/ \
        ~/.cache/mmllava/llava-7b-v1.5_vqa
"""
import os.path as osp

from mmllava.utils.cli import make_parser, run_cli


def parse_args(argv=None):
    parser = make_parser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='llava-hf folder, original LLaVA folder, or mmpretrain .pth')
    parser.add_argument('out_dir', help='output folder')
    parser.add_argument('--vision-tower', help='HF CLIP folder (original LLaVA whose '
                        'mm_vision_tower is not local; mmpretrain files without a tower), or an '
                        'mmpretrain CLIP ViT file')
    parser.add_argument('--tokenizer', help='tokenizer folder or tokenizer.model, when SRC has '
                        'none (mmpretrain)')
    parser.add_argument('--arch-config', help='config.json giving the architecture of an '
                        'mmpretrain file (default: inferred from weight shapes)')
    parser.add_argument('--base-config', help='the config that config.py is written over '
                        "(default: the zoo config of OUT_DIR's name when it is a zoo model, "
                        'else configs/llava/llava-7b-v1.5_vqa.py)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmllava.apis.hub import ModelHub
    from mmllava.convert import convert_to_mmllava
    base = args.base_config
    name = osp.basename(osp.normpath(args.out_dir))
    if base is None and ModelHub.has(name) and ModelHub.converted_from(name):
        base = str(ModelHub.config_path(name))
        print(f'{name} is a zoo model: config.py is written over {ModelHub.get(name)["Config"]}')
    convert_to_mmllava(args.src, args.out_dir, vision_tower=args.vision_tower,
                       tokenizer=args.tokenizer, arch_config=args.arch_config,
                       base_config=base)


if __name__ == '__main__':
    run_cli(main)
