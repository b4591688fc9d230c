"""Model-level rules that forms (the admin) rely on."""

import pytest
from django.core.exceptions import ValidationError

from core.models import key_validator, name_validator, service_name_validator


@pytest.mark.parametrize(
    ("validator", "good"),
    [(name_validator, "taxon.items"), (key_validator, "doc-1:a"), (service_name_validator, "taxon")],
)
def test_name_and_key_validators_refuse_a_trailing_newline(validator, good):
    validator(good)
    with pytest.raises(ValidationError):
        validator(good + "\n")
