"""Chat with a LLaVA in the terminal: several images and clips, answers streamed.

Commands: ``/image PATH`` and ``/video PATH`` attach a visual to your next message (several
may be attached), ``/reset`` starts a new conversation, ``/exit`` (or Ctrl-D) quits. Anything
else is a message; later messages without a visual still see the earlier ones.

Example:
    python demo/chat.py configs/llava/llava-tiny_vqa.py
    python demo/chat.py llava-7b-v1.5_vqa --device cuda:0
"""
import os
import sys
import time

PROMPT = 'USER: '
ANSWER = 'ASSISTANT: '
HELP = ('commands: /image PATH, /video PATH (attach to the next message), /reset, /exit; '
        'anything else is a message')


def parse_args(argv=None):
    from mmllava.utils.cli import add_model_arguments, make_parser

    parser = make_parser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument('--max-new-tokens', type=int, default=512,
                        help='longest answer in tokens (less where the context runs out)')
    parser.add_argument('--system', default=None,
                        help="a system message (default: the conversation template's)")
    return parser.parse_args(argv)



def _path_argument(line: str) -> str:
    path = line.split(maxsplit=1)[1].strip() if len(line.split(maxsplit=1)) > 1 else ''
    if len(path) >= 2 and path[0] == path[-1] and path[0] in '\'"':
        path = path[1:-1]  # a pasted path in quotes
    return os.path.expanduser(path)


def run(session, read=input, write=sys.stdout.write, flush=sys.stdout.flush) -> int:
    """The read-answer loop; returns the exit status."""
    while True:
        try:
            line = read(PROMPT).strip()
        except EOFError:
            write('\n')
            return 0
        except KeyboardInterrupt:
            write('\n')
            return 0
        if not line:
            continue
        command = line.split(maxsplit=1)[0].lower()
        if command in ('/exit', '/quit'):
            return 0
        if command == '/help':
            write(HELP + '\n')
            continue
        if command == '/reset':
            session.reset()
            write('(new conversation)\n')
            continue
        if command in ('/image', '/video'):
            path = _path_argument(line)
            if not path:
                write(f'usage: {command} PATH\n')
                continue
            try:
                (session.add_image if command == '/image' else session.add_video)(path)
            except (OSError, ValueError) as e:
                write(f'error: {e}\n')
                continue
            kinds = session.pending
            write(f'({command[1:]} attached: {path}; {len(kinds)} visual(s) go with your '
                  'next message)\n')
            continue
        if line.startswith('/'):
            write(f'unknown command {command}; {HELP}\n')
            continue
        try:
            pieces = session.stream(line)
        except ValueError as e:
            write(f'error: {e}\n')
            continue
        write(ANSWER)
        flush()
        try:
            for piece in pieces:
                write(piece)
                flush()
        except KeyboardInterrupt:
            pieces.close()  # stops generating; the part shown stays in the history
            write(' [interrupted]')
        write('\n')
        flush()


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    from mmllava.apis import ChatSession, load_model

    start = time.perf_counter()
    model, _ = load_model(args.model, args.checkpoint, args.device, args.load_8bit,
                          decoder=args.decoder, decode_dtype=args.decode_dtype)
    print(f'loaded {args.model} in {time.perf_counter() - start:.1f} s')
    print(HELP)
    session = ChatSession(model, system=args.system, max_new_tokens=args.max_new_tokens)
    return run(session)


if __name__ == '__main__':
    from mmllava.utils.cli import run_cli
    run_cli(main)
