"""The store's browsing messages (service ``store``), asked by the dashboard (``webui``) and
usable by any client; ``shared.protocol`` re-exports them and puts them in its unions.

===================  ===========================  ================================================
request              reply                        what the store answers
===================  ===========================  ================================================
``ProjectOverview``  ``StoreInfo``                per project: counts by kind, first and last
                                                  memory, sessions, weekly growth, top tags; every
                                                  project dependency (from the in-memory catalogue,
                                                  no table scan)
``Neighbours``       ``SearchHits``               the memories closest in meaning to one memory
                                                  (by its stored vector; by its words until it has
                                                  one), itself left out
===================  ===========================  ================================================

A memory's supersession links are on ``Memory`` itself (``GetMemories`` fills them).
"""

from __future__ import annotations

import msgspec

MAX_OVERVIEW_WEEKS = 520  # ten years of weekly buckets
MAX_OVERVIEW_TAGS = 100
MAX_NEIGHBOURS = 50


class ProjectOverview(msgspec.Struct, tag=True):
    """Every project's counts; ``weeks`` > 0 adds the memories stored in each of the last
    ``weeks`` weeks (Monday 00:00 UTC to Monday), ``top_tags`` > 0 the most used tags (per
    project and over all)."""
    weeks: int = 26
    top_tags: int = 10


class Neighbours(msgspec.Struct, tag=True):
    """The ``limit`` memories nearest to memory ``id`` (``not_found`` if there is none)."""
    id: str
    limit: int = 10
