# One score per (query, key) pair, per head, per sequence in the batch.
answer = batch * heads * 8192 * 8192 * element
