# Naming llm_int8_skip_modules replaces transformers' default list, so lm_head is named too; "model.layers.29.mlp"
# matches its three linear layers (gate_proj, up_proj, down_proj), as a module name from its start.
answer_call = BitsAndBytesConfig(
    load_in_8bit=True,
    llm_int8_threshold=6.0,
    llm_int8_skip_modules=["lm_head", f"model.layers.{model.config.num_hidden_layers - 1}.mlp"],
)
