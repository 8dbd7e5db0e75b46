"""Base class for every settings model: unknown keys are errors, not silently ignored."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

_NUMBERS = (int, float)


def _numeric_only(annotation: Any) -> bool:
    """int, float, or an Optional/Union of them: fields where a YAML bool is a mistake."""
    union = typing.get_origin(annotation) in (typing.Union, type(int | None))
    options = tuple(o for o in (typing.get_args(annotation) if union else (annotation,)) if o is not type(None))
    return bool(options) and all(o in _NUMBERS for o in options)


class Settings(BaseModel):
    # inf/nan are never meaningful settings (a loss weight of inf validates otherwise)
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, data: Any) -> Any:
        # pydantic's lax mode reads `epochs: yes` as 1; a YAML bool in a number field is a typo.
        # (A field validator would name the key better, but pydantic forbids 'before' validators
        # on the discriminator fields every component config has.)
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                if isinstance(data.get(name), bool) and _numeric_only(field.annotation):
                    raise ValueError(f"{name} must be a number, not {str(data[name]).lower()}")
        return data
