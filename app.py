"""SpecScope: interactive lab for speculative decoding of vision-language models.

    python app.py            # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT to change)

The default target is ``SPECSCOPE_DEFAULT_TARGET`` if set, else the embedded model in
assets/target. It loads in the background: the page is up before the model is.
"""

import logging
import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from core import api
from ui.app import build_app, launch

demo = build_app()

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    api.threads_from_env()
    _, local_url, _ = launch(demo, prevent_thread_lock=True)
    print(f"SpecScope is running at {local_url}", flush=True)
    demo.block_thread()
