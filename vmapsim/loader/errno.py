"""The errno values the load path returns (include/uapi/asm-generic/errno-base.h).

>>> -EEXIST
-17
"""

__all__ = ["EBUSY", "EEXIST", "EINVAL", "ENODEV", "ENOMEM", "ETXTBSY"]

ENOMEM = 12
EBUSY = 16
EEXIST = 17
ENODEV = 19
ETXTBSY = 26
EINVAL = 22
