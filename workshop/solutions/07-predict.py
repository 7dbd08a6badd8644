# On a GPU, generate with a dynamic cache launches every kernel of a step one by one from Python and does its
# bookkeeping between steps; for models of 1B-8B parameters that overhead is about as long as the kernels' own work or
# longer, and a static cache with a compiled step, replayed as one CUDA graph, removes most of it. (Uncompiled, as on
# the cpu profile, the own loop saves only the bookkeeping.)
answer_predict = True
