# The nf4 model holds nf4_footprint bytes (measured above): every token still reads each of them once.
answer = decode_bound_tokens_per_s(nf4_footprint, bandwidth)
