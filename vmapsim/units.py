"""Page-size arithmetic shared by every layer (the kernel's PAGE_* and bit helpers).

vmapsim models 4 KiB pages only (see docs/fidelity.md).

>>> page_align(1), fls(8), get_order(5 * PAGE_SIZE)
(4096, 4, 3)
"""

from __future__ import annotations

__all__ = [
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "PMD_SIZE",
    "GiB",
    "KiB",
    "MiB",
    "TiB",
    "fls",
    "get_count_order",
    "get_order",
    "hex_repr",
    "is_power_of_2",
    "page_align",
]

PAGE_SHIFT = 12
#: Bytes in a page; every layout vmapsim ships uses 4 KiB pages.
PAGE_SIZE = 1 << PAGE_SHIFT
KiB = 1 << 10
MiB = 1 << 20
#: Bytes one page-middle-directory entry maps with 4 KiB pages (``PMD_SIZE``): a huge vmalloc page.
PMD_SIZE = 2 * MiB
GiB = 1 << 30
TiB = 1 << 40


def page_align(n: int) -> int:
    """Round ``n`` up to a page boundary (the kernel's ``PAGE_ALIGN``).

    Runtime complexity: O(1).

    >>> page_align(4097)
    8192
    """
    return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def fls(n: int) -> int:
    """Find last set bit, 1-based, 0 for 0 (the kernel's ``fls()``).

    Runtime complexity: O(1).

    >>> fls(1), fls(255), fls(256)
    (1, 8, 9)
    """
    return n.bit_length()


def is_power_of_2(n: int) -> bool:
    """True when ``n`` is a positive power of two (``is_power_of_2()``).

    Runtime complexity: O(1).

    >>> is_power_of_2(4096), is_power_of_2(0), is_power_of_2(12)
    (True, False, False)
    """
    return n > 0 and n & (n - 1) == 0


def get_count_order(n: int) -> int:
    """Smallest ``k`` with ``2**k >= n`` (``get_count_order_long()``; -1 for 0).

    Runtime complexity: O(1).

    >>> get_count_order(4096), get_count_order(4097)
    (12, 13)
    """
    if n == 0:
        return -1
    return (n - 1).bit_length()


def get_order(size: int) -> int:
    """Page order of ``size`` bytes (``get_order()``): pages rounded up to 2**order.

    Runtime complexity: O(1).

    >>> get_order(PAGE_SIZE), get_order(3 * PAGE_SIZE)
    (0, 2)
    """
    return max(get_count_order((size + PAGE_SIZE - 1) >> PAGE_SHIFT), 0)


def hex_repr(value: object) -> str:
    """How reprs show an address: hex for a number, as-is for None (an attrs field's ``repr=``).

    Runtime complexity: O(1).

    >>> hex_repr(0xffffc90000000000), hex_repr(None)
    ('0xffffc90000000000', 'None')
    """
    return hex(value) if isinstance(value, int) and not isinstance(value, bool) else repr(value)
