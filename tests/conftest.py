import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# measured kernel paths and cost curves go to a per-session file, not the user's ~/.cache
os.environ.setdefault("SPECSCOPE_TUNING", os.path.join(tempfile.mkdtemp(prefix="specscope-tuning-"), "tuning.json"))
torch.set_num_threads(1)  # tiny models: threads only add overhead
