"""What every summary section is made of."""

from __future__ import annotations

from pydantic import ConfigDict

from ..document import Model, Number

__all__ = ["Figure", "Number", "Section"]

#: A measured figure: null when the run has no data for it ("not measured"), 0 when it measured zero.
Figure = float | None


class Section(Model):
    """A section (or part of one) of summary.json.

    Fields without a default must be written by the analysis; a field added after
    schema version 2 gets a default (``= None``), because summaries written before
    it lack it.
    """

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, validate_by_name=True, serialize_by_alias=True, use_attribute_docstrings=True)
