"""In-situ quantization names (mistralrs `in_situ_quant`) mapped onto agentkit's weight formats.

mistral.rs accepts GGML/k-quant, HQQ, FP8, AFQ and MXFP4 names plus the shorthands 2..8. On this
engine weights are quantized while loading to one of two CPU-fast formats: group-32 affine int4
(`_weight_int4pack_mm`) or per-channel int8 (`_weight_int8pack_mm`). Names of 2 to 4 bits map to
int4, 5 to 8 bits to int8 (more precise than asked, never less). The LM head stays int8 or dense.

Online imatrix calibration and re-ISQ: `agentkit.models.calibration`. Not covered: the exact k-quant /
HQQ / AFQ numerics, `imatrix=` / `calibration_file=` at load, UQFF files.
"""

from __future__ import annotations

_INT4 = {"Q4_0", "Q4_1", "Q2K", "Q3K", "Q4K", "HQQ4", "AFQ2", "AFQ3", "AFQ4", "MXFP4", "2", "3", "4"}
_INT8 = {"Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q5K", "Q6K", "Q8K", "HQQ8", "FP8", "F8Q8", "AFQ6", "AFQ8", "5", "6", "8"}


def isq_mode(name: str) -> str:
    """The engine weight mode ("int4" or "int8") for an ISQ type name (case-insensitive)."""
    if not isinstance(name, str):
        raise TypeError(f"in_situ_quant must be a string such as 'Q4K' or '8', got {type(name).__name__}")
    key = name.strip().upper()
    if key in _INT4:
        return "int4"
    if key in _INT8:
        return "int8"
    valid = ", ".join(sorted(_INT4 | _INT8))
    raise ValueError(f"unknown in_situ_quant type {name!r}; valid types: {valid}")
