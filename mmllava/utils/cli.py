"""Command-line options shared by the demos and the server (base layer: it imports nothing, so
that their ``--help`` answers at once)."""


def add_model_arguments(parser) -> None:
    """Add the MODEL argument and the options :func:`mmllava.apis.load_model` takes
    (``--checkpoint``, ``--device``, ``--load-8bit``) to a demo's or the server's parser."""
    parser.add_argument('model', help='a zoo name (see mmllava.apis.list_models) or a config file')
    parser.add_argument('--checkpoint', default=None,
                        help='weights file for a config (zoo names load their own weights)')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument('--load-8bit', action='store_true',
                        help="dynamic int8 of the LLM's linear layers (CPU only)")
