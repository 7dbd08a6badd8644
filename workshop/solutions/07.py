# layers x 2 (keys and values) x KV heads x head_dim x 2 bytes (bfloat16) x tokens x batch
config = model_config("llama3-8b-shape")
answer = config.num_hidden_layers * 2 * config.num_key_value_heads * config.head_dim * 2 * 8192 * 4
