# nf4 codes, 4-bit products in `half`, everything unquantized in `half`, PyTorch's SDPA attention.
answer_call = {
    "quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=half),
    "attn_implementation": "sdpa",
    "dtype": half,
}
