"""Launch the web app in-process on a free port for a test module (gradio_client, browser, soak)."""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served_app(env: dict):
    """Set ``env`` (a None value unsets), build and launch the app, yield (url, demo, ui.app module);
    close it and restore the environment afterwards."""
    old = {k: os.environ.get(k) for k in env}
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    from ui import app as ui_app

    demo = ui_app.build_app()
    port = free_port()
    ui_app.launch(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", demo, ui_app
    finally:
        demo.close()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
