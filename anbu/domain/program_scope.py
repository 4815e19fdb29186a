"""Which calling programme a resident follows, now that programmes belong to a district.

A programme is *shared* (no district: built in, every district may use it) or a district's
own. A district's own programme may stand in for a shared one in that district (a district
admin who edits a shared programme edits their district's copy), so one district's edit never
moves another district's calls. Each scope has at most one default: a resident without a
programme of their own follows their district's default, else the shared default.

Pure: the adapters read the rows and pass them in as :class:`ProgramKey`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProgramKey:
    """What the resolution reads of a programme row."""

    id: int
    district_id: int | None  # None: shared
    replaces_id: int | None  # the shared programme this one stands in for in its district
    is_default: bool


class ProgramBook:
    """Every programme a set of residents may follow, indexed for :meth:`resolve`."""

    def __init__(self, programs: Iterable[ProgramKey]) -> None:
        self.by_id: dict[int, ProgramKey] = {}
        self._shared_default: ProgramKey | None = None
        self._district_default: dict[int, ProgramKey] = {}
        self._stand_in: dict[tuple[int, int], ProgramKey] = {}
        # Lowest id first: when several claim the default flag, the oldest wins (as before).
        for p in sorted(programs, key=lambda p: p.id):
            self.by_id[p.id] = p
            if p.district_id is None:
                if p.is_default and self._shared_default is None:
                    self._shared_default = p
                continue
            if p.is_default:
                self._district_default.setdefault(p.district_id, p)
            if p.replaces_id is not None:
                self._stand_in.setdefault((p.district_id, p.replaces_id), p)

    def usable_in(self, program_id: int, district_id: int) -> bool:
        """A shared programme, or this district's own (never another district's)."""
        program = self.by_id.get(program_id)
        return program is not None and program.district_id in (None, district_id)

    def default_for(self, district_id: int) -> int | None:
        """The district's default: its own, else the shared one (as its stand-in, if any)."""
        found = self._district_default.get(district_id) or self._shared_default
        return self.local(found.id, district_id) if found is not None else None

    def local(self, program_id: int, district_id: int) -> int:
        """The programme as this district applies it: its stand-in for a shared one."""
        stand_in = self._stand_in.get((district_id, program_id))
        return stand_in.id if stand_in is not None else program_id

    def resolve(self, district_id: int, chosen: int | None) -> int | None:
        """The id of the programme a resident of ``district_id`` follows, having chosen
        ``chosen`` (None: the default). A chosen programme of another district (which the API
        refuses to store) is ignored, as if none were chosen. None: no programme, the built-in
        defaults apply."""
        if chosen is None or not self.usable_in(chosen, district_id):
            return self.default_for(district_id)
        return self.local(chosen, district_id)
