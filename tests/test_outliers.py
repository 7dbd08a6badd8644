import bitsandbytes as bnb
import torch

from coursetools.checks.lesson04 import decomposition_problem
from helpers.outliers import (
    capture_linear_inputs,
    feature_magnitudes,
    int8_matmul,
    llm_int8_matmul,
    outlier_features,
    quantize_rows,
    relative_error,
)


def activations_with_outliers(tokens: int = 64, features: int = 128) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, features, generator=generator)
    x[:, [3, 70]] *= 60  # two systematic outlier features, as LLM.int8() describes
    return x


def test_quantize_rows_maps_each_row_max_to_127():
    q, scale = quantize_rows(torch.tensor([[1.0, -2.0, 0.5], [10.0, 5.0, 0.0]]))
    assert q.dtype == torch.int8
    assert q.abs().amax(dim=1).tolist() == [127, 127]
    torch.testing.assert_close(q.float() * scale, torch.tensor([[1.0, -2.0, 0.5], [10.0, 5.0, 0.0]]), atol=0.05, rtol=0)


def test_outlier_features_follow_the_threshold():
    x = activations_with_outliers()
    assert outlier_features(x, 6.0).tolist() == [3, 70]
    assert outlier_features(x, 1e6).numel() == 0


def test_decomposition_beats_naive_int8_and_matches_bitsandbytes():
    x = activations_with_outliers()
    weight = torch.randn(96, 128, generator=torch.Generator().manual_seed(1)) * 0.05
    exact = x @ weight.T
    naive, ours = int8_matmul(x, weight), llm_int8_matmul(x, weight, 6.0)
    assert relative_error(ours, exact) < 0.5 * relative_error(naive, exact)
    layer = bnb.nn.Linear8bitLt(128, 96, bias=False, has_fp16_weights=False, threshold=6.0)
    layer.weight = bnb.nn.Int8Params(weight.half(), requires_grad=False, has_fp16_weights=False)
    layer = layer.to("cpu").eval()
    with torch.inference_mode():
        theirs = layer(x.half()).float()
    assert relative_error(ours, theirs) < 0.01


def test_capture_sees_every_linear_input():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = model

        def forward(self, input_ids):
            return self.body(input_ids)

    x = torch.randn(3, 5, 4)
    captured = capture_linear_inputs(Wrapper(), x)
    assert set(captured) == {"body.0", "body.2"}
    assert captured["body.0"].shape == (15, 4) and captured["body.2"].shape == (15, 8)
    assert (feature_magnitudes(captured)["body.2"] >= 0).all()
    assert not model[0]._forward_pre_hooks  # hooks removed afterwards


def test_training_mode_on_a_cpu_dequantizes_instead_of_decomposing():
    x = activations_with_outliers()
    weight = torch.randn(96, 128, generator=torch.Generator().manual_seed(1)) * 0.05
    layer = bnb.nn.Linear8bitLt(128, 96, bias=False, has_fp16_weights=False, threshold=6.0)
    layer.weight = bnb.nn.Int8Params(weight.half(), requires_grad=False, has_fp16_weights=False)
    layer = layer.to("cpu").eval()
    with torch.no_grad():
        decomposed = layer(x.half()).float()
        trained = layer.train()(x.half()).float()
    weight_q, weight_scale = quantize_rows(weight.half().float())
    plain = x @ (weight_q.float() * weight_scale).T  # the dequantized int8 weight times the unquantized input
    assert relative_error(trained, plain) < 0.5 * relative_error(trained, decomposed)
    assert relative_error(decomposed, llm_int8_matmul(x, weight, 6.0)) < 0.01


def bitsandbytes_product(x: torch.Tensor, weight: torch.Tensor, threshold: float = 6.0) -> torch.Tensor:
    layer = bnb.nn.Linear8bitLt(weight.shape[1], weight.shape[0], bias=False, has_fp16_weights=False, threshold=threshold)
    layer.weight = bnb.nn.Int8Params(weight.half(), requires_grad=False, has_fp16_weights=False)
    with torch.inference_mode():
        return layer.to("cpu").eval()(x.half()).float()


def test_ours_follows_bitsandbytes_row_scales_and_the_paper_option_differs():
    x = activations_with_outliers()
    x[:32, 3] = 4.0  # an outlier column's values below the threshold: bitsandbytes lets them set their rows' scales
    x, weight = x.half().float(), (torch.randn(96, 128, generator=torch.Generator().manual_seed(1)) * 0.05).half().float()
    theirs = bitsandbytes_product(x, weight)
    ours, paper = llm_int8_matmul(x, weight, 6.0), llm_int8_matmul(x, weight, 6.0, paper_scales=True)
    assert relative_error(ours, theirs) < 0.5 * relative_error(paper, theirs)


def test_decomposition_problem_rejects_every_product_that_is_not_the_decomposition():
    x = activations_with_outliers()
    x, weight = x.half().float(), (torch.randn(96, 128, generator=torch.Generator().manual_seed(1)) * 0.05).half().float()
    theirs = bitsandbytes_product(x, weight)
    weight_q, weight_scale = quantize_rows(weight)
    wrong = {"the float product": x @ weight.T, "naive int8": int8_matmul(x, weight),
             "int8 weights alone": x @ (weight_q.float() * weight_scale).T}
    assert decomposition_problem(llm_int8_matmul(x, weight, 6.0), theirs, wrong) is None
    for name, product in wrong.items():  # each wrong product, put in ours' place, is refused
        others = {"the decomposition": llm_int8_matmul(x, weight, 6.0), **{n: p for n, p in wrong.items() if n != name}}
        problem = decomposition_problem(product, theirs, others)
        assert problem is not None and "the decomposition" in problem, (name, problem)
