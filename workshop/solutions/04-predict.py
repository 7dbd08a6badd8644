# At batch 1 decoding reads every weight once per token; int8 halves those bytes, but each layer also quantizes its
# input, searches it for outlier columns and runs a second (16-bit) product: several small kernels per layer, whose
# launch and memory traffic cost more than the bytes saved at this size. Prediction: slower.
answer_predict = True
