"""National patient identifiers for the profile validator; the rules live in
``terminology.identifiers`` so that ``mappings`` (which may not import ``profiles``) uses
the same check."""

from terminology.identifiers import (
    CPR_SYSTEM,
    NHS_NUMBER_SYSTEM,
    is_valid_nhs_number,
    is_well_formed_cpr,
    nhs_check_digit,
)

__all__ = [
    "CPR_SYSTEM",
    "NHS_NUMBER_SYSTEM",
    "is_valid_nhs_number",
    "is_well_formed_cpr",
    "nhs_check_digit",
]
