# nf4 reads about a quarter of the 16-bit bytes in its linear layers, so if decoding were bound by reading weights it
# would be well over 2x faster. But lesson 00 put `generate`'s batch-1 decode far below the bandwidth bound, where most
# of a step's time is other work than reading the weights: both formats pay it, and each 4-bit layer does more work
# per call (it unpacks and scales its codes, on a GPU at batch 1 inside bitsandbytes' one fused kernel).
# So expect no gain, rather a small loss: a little under 1.
prediction = 0.8
