# One score per (query, key) pair, per head, per sequence in the batch, stored at the math kernel's score precision.
answer = batch * heads * 65536 * 65536 * score_element
