# The reasoning before measuring: on a GPU, generate with a dynamic cache launches every kernel of a step one by one
# from Python and grows its cache each step; if that overhead is about as long as the kernels' own work, a static
# cache with a compiled step, its kernels replayed from a CUDA graph, should more than halve the step. (Uncompiled, as
# on the cpu profile, the own loop saves only the bookkeeping.) The check after the measurement says whether it did.
answer_predict = True
