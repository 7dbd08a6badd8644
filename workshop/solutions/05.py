# The memory a context needs is the weights plus the prefill peak above them.
answer = min(ran, key=lambda key: ran[key].footprint_bytes + ran[key].peak_bytes[long])
