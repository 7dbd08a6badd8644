# GPU 0 holds the embedding and the first layers, plus the room accelerate keeps free for the largest module it may
# have to load there (lm_head); half a layer of slack keeps layer 28 from fitting. The CPU takes the rest.
from helpers.placement import model_bytes

layer, head = model_bytes(eight_b.model.layers[0], "bf16"), model_bytes(eight_b.lm_head, "bf16")
kept = len(eight_b.model.layers) - 4
answer_call = {0: model_bytes(eight_b.model.embed_tokens, "bf16") + kept * layer + head + layer // 2, "cpu": "64GiB"}
