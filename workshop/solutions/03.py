# A block stores weight / absmax as the nearest of the 16 NF4 codes, by its index.
codes = code_book("nf4")
answer = int((codes - 0.3 / 1.2).abs().argmin())
