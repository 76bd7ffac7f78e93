"""Ask a LLaVA a question about an image.

Example:
    python demo/image_demo.py demo/demo.jpg configs/llava/llava-tiny_vqa.py \
        --question "What is the person doing?"
"""
import argparse
import time


def parse_args():
    from mmllava.utils.cli import add_model_arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image', help='image file')
    add_model_arguments(parser)
    parser.add_argument('--question', default=None,
                        help="the question (default: the model's default question)")
    parser.add_argument('--max-new-tokens', type=int, default=None)
    parser.add_argument('--show-prompt', action='store_true',
                        help='also print the exact prompt given to the LLM')
    return parser.parse_args()


def main():
    args = parse_args()
    from mmllava.apis import LlavaInferencer, load_model

    start = time.perf_counter()
    model, _ = load_model(args.model, args.checkpoint, args.device, args.load_8bit)
    inferencer = LlavaInferencer(model)
    gen = {} if args.max_new_tokens is None else dict(max_new_tokens=args.max_new_tokens)
    result = inferencer(args.image, args.question, **gen)[0]
    if args.show_prompt:
        print(f"prompt: {result['prompt']!r}")
    answer = result.get('pred_answer', result.get('pred_caption'))
    print(f'answer: {answer}')
    print(f'({time.perf_counter() - start:.1f} s)')


if __name__ == '__main__':
    main()
