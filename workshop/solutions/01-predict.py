# Skipping a share p of the slots makes the per-token work at most 1/(1-p) times cheaper: 2x at half padding, 4x at
# three quarters. The first batch timed above (float32, about half padding) measured how much of its bound the fast
# path turned into speed; assume the same share of the larger bound at the sweep's most padded batch.
share = versus(timings, "fast path", "HF sdpa")[0] * (1 - padding_fraction(mask))
answer_predict = share / (1 - lesson.size("paddings")[-1])
