# True: the math kernel computes the scores in float32 even for half-precision inputs (twice the bytes), and softmax
# writes its weights into a second score-sized matrix while the scores are still held. On a CPU in float32 only the
# second reason applies, so the answer there rests on what else the kernel keeps.
answer_predict = True
