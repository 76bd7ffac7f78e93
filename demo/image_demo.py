"""Ask a LLaVA a question about an image.

Example:
    python demo/image_demo.py demo/demo.jpg configs/llava/llava-tiny_vqa.py \
        --question "What is the person doing?"
"""
import os.path as osp
import time


def parse_args(argv=None):
    from mmllava.utils.cli import add_model_arguments, make_parser

    parser = make_parser(description=__doc__.splitlines()[0])
    parser.add_argument('image', help='image file')
    add_model_arguments(parser)
    parser.add_argument('--question', default=None,
                        help="the question (default: the model's default question)")
    parser.add_argument('--max-new-tokens', type=int, default=None)
    parser.add_argument('--show-prompt', action='store_true',
                        help='also print the exact prompt given to the LLM')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.image):  # before the imports and the model: a typo costs no wait
        raise FileNotFoundError(2, 'no such image file', args.image)
    from mmllava.apis import LlavaInferencer, load_model
    from mmllava.apis.inference import print_answer

    start = time.perf_counter()
    model, _ = load_model(args.model, args.checkpoint, args.device, args.load_8bit,
                          decoder=args.decoder, decode_dtype=args.decode_dtype)
    inferencer = LlavaInferencer(model)
    gen = {} if args.max_new_tokens is None else dict(max_new_tokens=args.max_new_tokens)
    result = inferencer(args.image, args.question, **gen)[0]
    if args.show_prompt:
        print(f"prompt: {result['prompt']!r}")
    print_answer(result)
    print(f'({time.perf_counter() - start:.1f} s)')


if __name__ == '__main__':
    from mmllava.utils.cli import run_cli
    run_cli(main)
