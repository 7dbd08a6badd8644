# A StaticCache of 4096 positions, made once; CompileConfig(mode="reduce-overhead") is also what None would give.
answer_call = dict(max_new_tokens=new_tokens, do_sample=False, cache_implementation="static", max_cache_len=4096,
                   compile_config=CompileConfig(mode="reduce-overhead"))
