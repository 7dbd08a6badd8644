# The reasoning before measuring: in lesson 07's compiled loop a 16-bit step of a large model spends most of its time
# in its kernels, reading weights (lesson 07's step split), so a format that reads fewer bytes per token has room to be
# faster if its kernel reads its packed weights at a good fraction of the bandwidth and the compiled step adds little
# around it; torchao's quantization README (`torchao/quantization/README.md`, its H100 table, from torchao's compiled
# `_models/llama/generate.py`) lists Llama-3.1-8B decoding faster in int8 and int4 weight-only than in bfloat16. An
# uncompiled step (the cpu profile) is mostly overhead, where fewer bytes need not show: there, no. The check after
# the measurement says whether it did.
answer_predict = lesson.device == "cuda"
