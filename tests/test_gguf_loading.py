"""Loading a GGUF base model for training parses its file once, and leaves the `gguf` package as it found it."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from azurine.fine_tuning.gguf_loading import _parsed_once


def small_gguf(path: Path) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_within_a_load_each_file_is_parsed_once_and_each_name_table_built_once(tmp_path: Path) -> None:
    path = small_gguf(tmp_path / "model.gguf")
    with _parsed_once():
        first = gguf.GGUFReader(path)
        assert gguf.GGUFReader(str(path)) is first
        assert [t.name for t in first.tensors] == ["token_embd.weight"]
        table = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
        assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2) is table
    assert gguf.GGUFReader is gguf.gguf_reader.GGUFReader
    assert gguf.GGUFReader(path) is not first
    assert gguf.get_tensor_name_map is gguf.tensor_mapping.get_tensor_name_map
