"""Merge a LoRA run's adapters into its base weights.

    python tools/model_converters/merge_lora.py CONFIG CHECKPOINT OUT [--base W ...] [--no-merge]

CONFIG is the LoRA or QLoRA training config (``model.lora`` set); CHECKPOINT the run's
trainable weights (the ``.safetensors`` twin that ``TrainableOnlyCheckpointHook`` writes
beside each ``.pth``; a ``.pth`` path is taken to mean its twin); base weights come from
``--base`` or else the config's ``load_base``. OUT (safetensors) then holds the full model:

* merged (default): the base layout, loadable by the base config:
  ``get_model('configs/llava/llava-tiny_vqa.py', pretrained=OUT)``;
* ``--no-merge``: base + adapters in the LoRA layout, loadable by the LoRA config:
  ``get_model('configs/llava/llava-tiny_lora.py', pretrained=OUT)``.

A QLoRA config (``model.llm.quantization_config``) merges the same way: into the float base
(fp32), never into 4-bit weights. The adapters were trained against the NF4-rounded base, so
the merged model is near, not equal, to the one that trained (the usual QLoRA practice).
"""
import os.path as osp
import sys

from mmllava.utils.cli import make_parser, run_cli


def parse_args(argv=None):
    parser = make_parser(description='Merge LoRA adapters into base weights')
    parser.add_argument('config', help='the LoRA training config')
    parser.add_argument('checkpoint', help='trainable weights of the run (.safetensors)')
    parser.add_argument('out', help='output .safetensors file')
    parser.add_argument('--base', nargs='+', help='base weights (default: cfg.load_base)')
    parser.add_argument('--no-merge', action='store_true',
                        help='keep the adapters unmerged (LoRA layout)')
    return parser.parse_args(argv)


def _weights_path(path: str) -> str:
    if path.endswith(('.pth', '.pt')):
        twin = osp.splitext(path)[0] + '.safetensors'
        if osp.isfile(twin):
            print(f'Reading the trainable weights of {path} from {twin}', file=sys.stderr)
            return twin
    return path


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config

    from mmllava.engine import load_partial_weights, load_weights, save_weights
    from mmllava.engine.checkpoint import align_vocab_rows
    from mmllava.models.peft import merge_lora
    from mmllava.registry import MODELS
    from mmllava.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(args.config)
    if not cfg.model.get('lora'):
        raise ValueError(f'{args.config} has no model.lora: nothing to merge')
    llm = cfg.model.get('llm') or {}
    if llm.get('quantization_config') is not None:
        # QLoRA: the model built here is never quantized (only the runner does that), so the
        # adapters merge into the float base; built in fp32, as the LoRA recipes merge, not in
        # the bf16 the QLoRA run loads its base in (that would round the fp16 base weights).
        llm.pop('quantization_config')
        llm.pop('torch_dtype', None)
        print('QLoRA config: merging the adapters into the float (fp32) base weights, not '
              'into their 4-bit quantization', file=sys.stderr)
    bases = args.base if args.base else cfg.get('load_base')
    if isinstance(bases, str):
        bases = [bases]
    # The base's vocabulary rows (a llava-hf conversion's 32064 or an original's 32000).
    align_vocab_rows(cfg.model, list(bases or []) + [_weights_path(args.checkpoint)])
    model = MODELS.build(cfg.model)
    if not bases:
        print('No base weights given (--base or load_base): the base keeps the initialization '
              'of the config (only right for the tiny models, which train from it)',
              file=sys.stderr)
    for base in bases or []:
        load_partial_weights(model, load_weights(base), source=base)
    load_partial_weights(model, load_weights(_weights_path(args.checkpoint)),
                         source=args.checkpoint, require_trainable=True)
    if not args.no_merge:
        merge_lora(model)
    state = model.state_dict()
    save_weights(state, args.out, metadata=dict(merged=str(not args.no_merge).lower()))
    print(f'Wrote {len(state)} tensors ({"unmerged" if args.no_merge else "merged"}) to '
          f'{args.out}')


if __name__ == '__main__':
    run_cli(main)
