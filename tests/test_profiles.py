import pytest
import torch

from coursetools.profiles import PROFILES, allow_sdpa_backends, detect_profile_name, use_profile
from helpers.attention import allowed_backends, default_backend


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks detection on a machine without a GPU")
def test_cpu_machine_detects_cpu_profile(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    assert detect_profile_name() == "cpu"


def test_env_override_and_bad_name(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "cpu")
    assert use_profile().name == "cpu"
    monkeypatch.setenv("COURSE_PROFILE", "tpu")
    with pytest.raises(ValueError, match="choose one of"):
        detect_profile_name()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_gpu_profile_without_gpu_says_what_to_do():
    with pytest.raises(RuntimeError, match="COURSE_PROFILE=cpu"):
        use_profile("gpu")


def test_every_profile_sizes_the_same_lessons_and_keys():
    keys = {name: {lesson: set(sizes) for lesson, sizes in p.sizes.items()} for name, p in PROFILES.items()}
    assert keys["cpu"] == keys["gpu"] == keys["t4"]


def test_t4_profile_emulates_a_t4():
    t4 = PROFILES["t4"]
    assert t4.dtype == torch.float16 and t4.memory_cap_gib == 15
    # a T4 is sm 7.5: flash and cuDNN attention need sm 8.0, the memory-efficient kernel sm 5.0
    assert t4.sdpa_backends == ("math", "efficient")
    assert PROFILES["gpu"].sdpa_backends is None
    assert t4.compute_capability == (7, 5) and PROFILES["gpu"].compute_capability is None


def test_lesson_capability_is_the_emulated_gpus_under_t4_and_none_on_a_cpu(monkeypatch):
    from coursetools.environment import environment_report
    from coursetools.lesson import Lesson

    report = environment_report(probe_hub=False)
    assert Lesson("08", PROFILES["cpu"], report).capability == (0, 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    assert Lesson("08", PROFILES["t4"], report).capability == (7, 5)  # an H100 standing in for a T4
    assert Lesson("08", PROFILES["gpu"], report).capability == (9, 0)


def test_allowing_the_t4_backends_switches_off_flash_and_cudnn():
    before = allowed_backends()
    q = torch.randn(1, 2, 16, 64)
    try:
        allow_sdpa_backends(PROFILES["t4"].sdpa_backends)
        assert sorted(allowed_backends()) == ["efficient", "math"]
        assert default_backend(q, q, q) in PROFILES["t4"].sdpa_backends  # here too: the CPU's flash kernel is off
        with pytest.raises(ValueError, match="choose from"):
            allow_sdpa_backends(("turbo",))
    finally:
        allow_sdpa_backends(tuple(before))
    assert allowed_backends() == before


def test_missing_size_names_known_keys():
    assert PROFILES["cpu"].size("00", "new_tokens") > 0
    with pytest.raises(ValueError, match=r"no size 'no_such_size' for lesson '00'; use one of \[.*'eval_tokens'"):
        PROFILES["cpu"].size("00", "no_such_size")


def test_size_of_an_unknown_lesson_lists_the_lessons():
    with pytest.raises(ValueError, match=r"unknown lesson '42'; choose one of \['00', '01', "):
        PROFILES["cpu"].size("42", "new_tokens")


def test_use_profile_rejects_an_unknown_name_listing_the_profiles():
    assert use_profile("cpu").name == "cpu"
    with pytest.raises(ValueError, match=r"unknown profile 'tpu'; choose one of \['cpu', 'gpu', 't4'\]"):
        use_profile("tpu")


def test_backends_a_t4_lacks_stay_off_inside_sdpa_kernel_and_probes_say_why():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from helpers.attention import probe_backends

    before = allowed_backends()
    q = torch.randn(1, 2, 16, 64)
    try:
        allow_sdpa_backends(("math",), "a test GPU")
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            assert allowed_backends() == []
            with pytest.raises(RuntimeError, match="No (available kernel|viable backend)"):  # CUDA and CPU words
                torch.nn.functional.scaled_dot_product_attention(q, q, q)
        torch.backends.cuda.enable_flash_sdp(True)
        assert not torch.backends.cuda.flash_sdp_enabled()
        verdicts = probe_backends(q, q, q)
        assert verdicts["math"].runs and not verdicts["flash"].runs
        assert verdicts["flash"].reasons == ("not on a test GPU: PyTorch's flash kernel needs sm 8.0 or newer",)
    finally:
        allow_sdpa_backends(tuple(PROFILES["t4"].sdpa_backends) + ("flash", "cudnn"))
    torch.backends.cuda.enable_flash_sdp(True)
    assert torch.backends.cuda.flash_sdp_enabled() and set(before) <= set(allowed_backends())
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        assert allowed_backends() == ["flash"]
