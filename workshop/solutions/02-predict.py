# The reasoning before measuring: the math kernel computes the scores in float32 even for half-precision inputs
# (twice the bytes), and softmax likely writes its weights into a second score-sized matrix while the scores are still
# held. On a CPU in float32 only the second reason can apply. The measured peak says how many matrices it really holds.
answer_predict = True
