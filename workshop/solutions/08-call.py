# int4 weights in groups of 32, packed for tinygemm (torch.ops.aten._weight_int4pack_mm), torch.compile's settings kept.
answer_call = TorchAoConfig(
    Int4WeightOnlyConfig(group_size=32, int4_packing_format="tile_packed_to_4d", set_inductor_config=False)
)
