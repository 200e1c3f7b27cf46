"""fpgacsp wire package: the contracts shared by the client and the daemon.

The ISA v1 program model and its validation, the canonical encoding that names a program, and the
packed-bitset codec for domains. Generated protobuf stubs live in ``fpgacsp_proto.v1``.
"""

from .bitset import (
    DomainError,
    check_domains,
    check_priorities,
    full_domains,
    pack_domains,
    singleton_values,
    unpack_domains,
    word_dtype,
)
from .encoding import decode_program, encode_program, program_id
from .isa import (
    ISA_VERSION,
    MAX_DOMAIN_SIZE,
    AllDiff,
    Constraint,
    Kind,
    Linear,
    LinearOp,
    Mode,
    Neq,
    Program,
    ProgramError,
    Status,
    Table2,
    make_program,
)

__all__ = [
    "ISA_VERSION",
    "MAX_DOMAIN_SIZE",
    "AllDiff",
    "Constraint",
    "DomainError",
    "Kind",
    "Linear",
    "LinearOp",
    "Mode",
    "Neq",
    "Program",
    "ProgramError",
    "Status",
    "Table2",
    "check_domains",
    "check_priorities",
    "decode_program",
    "encode_program",
    "full_domains",
    "make_program",
    "pack_domains",
    "program_id",
    "singleton_values",
    "unpack_domains",
    "word_dtype",
]
