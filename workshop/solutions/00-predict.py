# A pass reads every weight once whatever its length, and on a GPU launches the same kernels: for a small model on a
# GPU that fixed cost dominates, and the whole prompt costs about one token's pass. A CPU has little arithmetic to
# spare: there the prompt's tokens cost several one-token passes, yet far fewer than the prompt's length, since they
# share one reading of the weights and the work around each pass: say a sixteenth of it.
answer_predict = 1.2 if lesson.device == "cuda" else prompt_ids.shape[1] / 16
