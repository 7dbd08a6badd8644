# NF4 code book, the lesson's 16-bit dtype for the products, and the absmax scales quantized again.
answer_call = BitsAndBytesConfig(
    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=half, bnb_4bit_use_double_quant=True
)
