# True: a pass reads every weight once (and on a GPU launches the same kernels) whether it carries one token or the
# whole prompt, so the prompt's tokens share that cost; a decode step pays it for a single token.
answer_predict = True
