# Only flash and cuDNN allowed; set_priority=True makes the list's order the order SDPA tries them (flash first).
answer_call = sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION], set_priority=True)
