# The bytes promise about 3x, but lesson 07's compiled 16-bit step already reads its weights with cuBLAS's tuned
# matrix-vector kernel, while the int4 kernel must also unpack and scale every weight (and tinygemm was tuned for the
# A100, not for later GPUs); lessons 03-05 found 4-bit weights slower at batch 1. Not measurably faster in every round.
answer_predict = False
