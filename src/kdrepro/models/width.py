"""The width option of every architecture, without torch (the maxout layouts scale by it too)."""


def scaled(channels: int, width: float, multiple: int = 1) -> int:
    """`channels` times the width option, rounded to a multiple of `multiple` (groups, channel splits), at least one."""
    return max(multiple, round(channels * width / multiple) * multiple)
