# sdpa attention, float16 weights, the whole model placed on the lesson's device as it loads.
answer_call = AutoModel.from_pretrained(
    pretrained_path("minilm-l6"), attn_implementation="sdpa", dtype=torch.float16, device_map=lesson.device
)
