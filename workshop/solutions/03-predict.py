# The 49 152 x 576 embedding (tied with the output head) is about a fifth of SmolLM2's 135 M weights and is no
# nn.Linear: it stays 16-bit. The other four fifths take 4.5 bits (4-bit codes, a float32 absmax per 64) instead of 16.
answer_predict = round(0.2 + 0.8 * 4.5 / 16, 2)
