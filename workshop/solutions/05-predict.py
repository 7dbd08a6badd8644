# At batch 1 each step is a matrix-vector product per layer, launched one kernel at a time from Python: for a model
# this small the step is likely bound by overhead more than by weight bytes, and bitsandbytes adds unpacking work to
# every layer, so the quarter-size reads are not expected to pay off (the check says what this machine measured).
prediction = False
