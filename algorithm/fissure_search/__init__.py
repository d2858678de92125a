"""Global fissure search (issue 30): hypotheses over each fissure's anatomical range, an anatomical
prior choosing among them (search.py, hypotheses.py, prior.py; docs/design.md, "Global fissure search")."""

from algorithm.fissure_search.search import GLOBAL_MODE, SearchSettings, refine_global, search_fissures, warnings

__all__ = ["GLOBAL_MODE", "SearchSettings", "refine_global", "search_fissures", "warnings"]
