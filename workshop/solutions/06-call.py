# GPU 0 holds the embedding and the first layers, plus the room the planner keeps free for the largest module it may
# have to load there (lm_head); half a layer of slack keeps layer 28 from fitting. The CPU takes the rest.
from helpers.placement import module_sizes

sizes = module_sizes(eight_b, "bf16")  # bytes of each module by name, as the planner counts them
layer, head = sizes["model.layers.0"], sizes["lm_head"]
kept = len(eight_b.model.layers) - 4
answer_call = {0: sizes["model.embed_tokens"] + kept * layer + head + layer // 2, "cpu": "64GiB"}
