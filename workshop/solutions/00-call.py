# The same one call as for SmolLM2: pretrained_path gives the synthetic checkpoint, written once into the course cache.
answer_call = AutoModelForCausalLM.from_pretrained(
    pretrained_path("llama-tiny-shape"), dtype=lesson.profile.dtype, device_map=lesson.device
)
