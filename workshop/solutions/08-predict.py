# The reasoning before measuring: the bytes promise about 3x, but the int4 kernel must also unpack and scale every
# weight, and a quantized model's step may add time around its kernels that the 16-bit step does not have; lessons
# 03-05 found 4-bit weights slower at batch 1. Expected: not measurably faster in every round. The lesson's profile of
# a step shows where the time goes on this machine.
answer_predict = False
