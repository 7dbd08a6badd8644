# At batch 1 the two GPUs hold different layers and take turns: a split adds memory, not speed.
prediction = False
