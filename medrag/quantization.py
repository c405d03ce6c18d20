"""The NF4 4-bit setting shared by training (QLoRA) and serving, so an adapter runs on the base it was trained on.

Shortcut on purpose: only NF4 (the QLoRA paper's data type for normally distributed weights) is
offered; 8-bit and other 4-bit types are left out because no adapter here was trained on them.
"""

from __future__ import annotations

from medrag.errors import missing_dependency


def nf4_config(compute_dtype, double_quant: bool = True, purpose: str = "4-bit loading"):
    """A transformers BitsAndBytesConfig for NF4 weights computing in `compute_dtype`.

    `double_quant` quantises the quantisation constants too (~0.4 GB saved on a 7B model). A missing
    bitsandbytes is a MedRAGError with the pip line, naming `purpose`."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise missing_dependency("bitsandbytes", purpose) from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
    )
