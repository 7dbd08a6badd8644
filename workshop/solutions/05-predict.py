# nf4 reads about a quarter of the 16-bit bytes in its linear layers, so if decoding were bound by reading weights it
# would be well over 2x faster. But at batch 1 `generate` launches every layer's small kernels one by one from Python:
# for a model of this size the step is bound by that overhead far more than by bytes (lesson 00 put generate's decode
# far below the bandwidth bound), both formats pay it, and bitsandbytes adds its own work to every layer (more Python
# around its kernel, and unpacking and scaling the 4-bit codes, which on a GPU at batch 1 happens inside its one fused
# kernel). So expect no gain, rather a small loss: a little under 1.
prediction = 0.8
