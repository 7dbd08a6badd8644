# 4-bit weights take 4/bits of the bytes; every token still reads each weight once.
answer = decode_bound_tokens_per_s(int(footprint * 4 / bits), bandwidth)
