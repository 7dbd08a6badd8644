# False: with no padding the fast path has nothing to skip. It still packs the batch into a nested tensor and back,
# and HF sdpa already runs a fused attention kernel, so little is left to gain and the packing may cost more.
answer_predict = False
