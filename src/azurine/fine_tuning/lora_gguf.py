"""A peft LoRA adapter written as the GGUF adapter llama.cpp loads (`lora_path`), with the `gguf` package.

This is what llama.cpp's `convert_lora_to_gguf.py` writes for a Llama model, without the converter's need of the
base model's Hugging Face folder: `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and each
adapted weight's `lora_a` (rank × in) and `lora_b` (out × rank) under llama.cpp's tensor names. Only modules whose
GGUF weights keep Hugging Face's layout are adapted (`trainer.TARGET_MODULES`), so no tensor needs permuting.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

GGUF_NAMES = {"v_proj": "attn_v", "o_proj": "attn_output", "gate_proj": "ffn_gate", "up_proj": "ffn_up",
              "down_proj": "ffn_down"}
PEFT_NAME = re.compile(r"layers\.(\d+)\.\w+\.(\w+_proj)\.lora_([AB])(?:\.default)?\.weight$")


def adapter_gguf(adapter: dict[str, Any], alpha: float, architecture: str = "llama") -> bytes:
    import gguf
    import numpy as np

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "adapter.gguf"
        writer = gguf.GGUFWriter(str(path), architecture)
        writer.add_string("general.type", "adapter")
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", float(alpha))
        written = 0
        for name, tensor in sorted(adapter.items()):
            match = PEFT_NAME.search(name)
            if match is None:
                continue
            layer, module, which = match.groups()
            if module not in GGUF_NAMES:
                raise ValueError(f"no GGUF name for the adapted module {module}")
            values = tensor.detach().float().numpy().astype(np.float32)
            writer.add_tensor(f"blk.{layer}.{GGUF_NAMES[module]}.weight.lora_{which.lower()}", values)
            written += 1
        if not written:
            raise ValueError("the adapter holds no LoRA tensors")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path.read_bytes()
