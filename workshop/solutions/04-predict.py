# At batch 1 a decode step reads every weight once, and int8 weights are half the bytes: if the bytes set the pace,
# int8 would decode up to nearly twice as fast (its embedding, norms and head stay 16-bit). But a 135M or 1B model on
# a GPU decodes far below its bandwidth bound, where most of a step's time is other work than reading the weights, and
# each int8 layer does more work per call: it quantizes its input, searches it for outlier columns and may run a
# second, 16-bit product. Users report int8 at a fifth to a third of fp16's speed on their machines (bitsandbytes #347:
# 21%, #181: about 0.33x). Prediction, from those reports: well below 1, about a third.
answer_predict = 0.3
