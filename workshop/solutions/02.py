# One score per (query, key) pair, per head, per sequence in the batch, stored at the math kernel's score precision.
answer = batch * heads * 8192 * 8192 * score_element
