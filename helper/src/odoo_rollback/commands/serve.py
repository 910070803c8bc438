"""serve: the API for Odoo, until stopped (SIGTERM or Ctrl-C).

Started by systemd's socket activation (odoo-rollback.socket), it serves on the socket it inherits
(fd 3, LISTEN_FDS/LISTEN_PID) and leaves that socket's file to systemd.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from ..api.server import make_server
from ..config import Config
from ..errors import EXIT_OK, ConfigError
from ..output import Output


def serve(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    if cfg.source is None:
        raise ConfigError("serve needs a configuration file (jobs run the helper with it)")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = make_server(cfg, cfg.source.resolve(), Path(args.socket) if args.socket else None, args.host, args.port)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    logging.getLogger("odoo_rollback.api").info("serving the API on %s", server.where)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if server.owned_path is not None:
            server.owned_path.unlink(missing_ok=True)
    return EXIT_OK
