# Bisect the GPU 0 budget: the smallest whole GiB whose plan puts every module on GPU 0 or GPU 1.
from helpers.placement import BudgetError


def fits(gib):
    try:
        device_map = plan(big, {0: f"{gib}GiB", 1: "80GiB"}, precision="bf16")
    except BudgetError:
        return False
    return set(device_map.values()) <= {0, 1}


low, high = 1, 80  # 80 GiB fits (planned above), so the answer lies in 1..80
while low < high:
    middle = (low + high) // 2
    low, high = (low, middle) if fits(middle) else (middle + 1, high)
answer = low
